"""Bad input over real HTTP: the backend returns 4xx or empty results, never 5xx.

Whenever `/predict` answers 200, it has one item per task, because Label Studio drops every
prediction of a batch whose count does not match.
"""

import re
import time
import uuid

import pytest
import redis
import requests

from tests.integration.conftest import REDIS_URL, SENTIMENT_CONFIG, TOPIC_CONFIG, annotation_event, sentiment_text
from tests.integration.test_protocol import latest_bundle, send_annotations, setup_project, wait_for_version
from tests.support.processes import start_server, start_worker
from tests.support.recorders import HitRecorder

POSITIVE, NEGATIVE = "Positive / good", "Négatif"
TRAINED, PLAIN, UNKNOWN_CHOICE = 101, 102, 103
TOPICS = ("sport", "tech", "politics")

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<View>
  <Text name="review" value="$text"/>
  <Choices name="sentiment" toName="review"><Choice value="&lol9;"/><Choice value="b"/></Choices>
</View>"""


def external_entity_config(target: str) -> str:
    return f"""<?xml version="1.0"?>
<!DOCTYPE view [<!ENTITY xxe SYSTEM "{target}">]>
<View>
  <Text name="review" value="$text"/>
  <Choices name="sentiment" toName="review"><Choice value="&xxe;"/><Choice value="b"/></Choices>
</View>"""


def choices_config(choices: str, text: str = '<Text name="review" value="$text"/>', extra: str = "") -> str:
    return f'<View>{text}{extra}<Choices name="sentiment" toName="review">{choices}</Choices></View>'


TWO_CHOICES = '<Choice value="a"/><Choice value="b"/>'
BAD_CONFIGS = {
    "no_choices": ('<View><Text name="review" value="$text"/></View>', "no <Choices> control"),
    "no_text": (f'<View><Choices name="sentiment" toName="review">{TWO_CHOICES}</Choices></View>',
                "no <Choices> control"),
    "only_unknown_tags": ('<View><Frobnicate name="x"/><Widget name="y" toName="x"/></View>', "no <Choices> control"),
    "duplicate_text_names": (choices_config(TWO_CHOICES, extra='<Text name="review" value="$other"/>'),
                             "two tags named 'review'"),
    "duplicate_choices_names": (choices_config(TWO_CHOICES, extra=f'<Choices name="sentiment" toName="review">'
                                                                  f'{TWO_CHOICES}</Choices>'),
                                "two tags named 'sentiment'"),
    "duplicate_choice_values": (choices_config('<Choice value="a"/><Choice value="a"/><Choice value="b"/>'),
                                r"lists \['a'\] more than once"),
    "choices_differ_by_case": (choices_config('<Choice value="Yes"/><Choice value="yes"/>'), "differ only by case"),
    "one_choice": (choices_config('<Choice value="a"/>'), "has 1 choice"),
    "invalid_xml": ('<View><Text name="review" value="$text"></View>', "not valid XML"),
    "url_text": (choices_config(TWO_CHOICES, text='<Text name="review" value="$text" valueType="url"/>'),
                 "never fetches task URLs"),
    "billion_laughs": (BILLION_LAUGHS, "DTD or entities"),
    "external_entity_file": (external_entity_config("file:///etc/passwd"), "DTD or entities"),
}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One server and worker with a trained sentiment project and a trained `$undefined$` project."""
    tmp_path = tmp_path_factory.mktemp("bad-input")
    queue_name = f"mraru-test-{uuid.uuid4().hex[:8]}"
    env = {"REDIS_URL": REDIS_URL, "MRARU_QUEUE_NAME": queue_name, "MRARU_MIN_TRAIN_EXAMPLES": "4"}
    server, url = start_server(tmp_path / "model_dir", tmp_path, **env)
    worker = start_worker(tmp_path / "model_dir", tmp_path, **env)
    try:
        setup_project(url, TRAINED)
        setup_project(url, PLAIN, TOPIC_CONFIG)
        send_annotations(url, TRAINED, 12)
        for index in range(9):
            topic = TOPICS[index % 3]
            event = annotation_event(PLAIN, 500 + index, 9000 + index, f"{topic} story {index} about {topic}", topic,
                                     from_name="topic", to_name="body", key="$undefined$")
            assert requests.post(f"{url}/webhook", json=event, timeout=5).status_code == 202
        wait_for_version(url, TRAINED, SENTIMENT_CONFIG, "mraru-v0")
        wait_for_version(url, PLAIN, TOPIC_CONFIG, "mraru-v0")
        yield type("Live", (), {"url": url, "model_dir": tmp_path / "model_dir"})()
    finally:
        worker.stop()
        server.stop()
        connection = redis.Redis.from_url(REDIS_URL)
        for key in connection.scan_iter(f"*{queue_name}*"):
            connection.delete(key)


def predict(url: str, tasks, project=TRAINED, **extra) -> requests.Response:
    body = {"tasks": tasks, **({"project": project} if project is not None else {}), **extra}
    response = requests.post(f"{url}/predict", json=body, timeout=60)
    assert response.status_code < 500, response.text
    if response.status_code == 200 and isinstance(tasks, list):
        assert len(response.json()["results"]) == len(tasks)
    return response


def choices_of(item: dict, from_name: str | None = None) -> list[str]:
    return [choice for result in item["result"] if from_name in (None, result["from_name"])
            for choice in result["value"]["choices"]]


# -- /predict: the tasks list ------------------------------------------------------------------

def test_predict_empty_tasks_returns_empty_results(live):
    response = predict(live.url, [])

    assert response.status_code == 200
    assert response.json()["results"] == []


def test_predict_missing_tasks_is_rejected(live):
    response = requests.post(f"{live.url}/predict", json={"project": TRAINED}, timeout=5)

    assert response.status_code == 400
    assert response.json()["field"] == "tasks"


@pytest.mark.parametrize("tasks", [None, "tasks", 5, {"data": {"text": "x"}}], ids=["null", "string", "number", "object"])
def test_predict_tasks_not_a_list_is_rejected(live, tasks):
    response = requests.post(f"{live.url}/predict", json={"tasks": tasks, "project": TRAINED}, timeout=5)

    assert response.status_code == 400
    assert "tasks must be a list" in response.json()["message"]


def test_predict_task_without_data_gets_empty_result(live):
    results = predict(live.url, [{"id": 1}, {"id": 2, "data": None}, {"data": {"text": "a superb film"}}]).json()["results"]

    assert [item["result"] for item in results[:2]] == [[], []]
    assert choices_of(results[2]) == [POSITIVE]


def test_predict_task_not_an_object_gets_empty_result(live):
    tasks = [1, "a superb film", None, ["a superb film"], True, {"data": "a superb film"}]

    results = predict(live.url, tasks).json()["results"]

    assert all(item["result"] == [] and item["score"] == 0.0 for item in results)


@pytest.mark.parametrize("data", [{}, {"text": None}, {"text": 42}, {"text": ["a superb film"]}, {"text": " \t\n "},
                                  {"text": {"value": "a superb film"}}],
                         ids=["missing", "null", "number", "list", "whitespace", "object"])
def test_predict_unusable_text_gets_empty_result(live, data):
    results = predict(live.url, [{"id": 1, "data": data}, {"id": 2, "data": {"text": "a dull film"}}]).json()["results"]

    assert results[0] == {"result": [], "score": 0.0, "model_version": results[1]["model_version"]}
    assert choices_of(results[1]) == [NEGATIVE]


def test_predict_one_megabyte_text_is_labelled(live):
    text = ("a wonderful and brilliant film " * 40_000)[:1_000_000]

    results = predict(live.url, [{"data": {"text": text}}]).json()["results"]

    assert choices_of(results[0]) == [POSITIVE]


def test_predict_mixed_scripts_emoji_and_combining_characters(live):
    texts = ["a superb film 🎬👍 très bien Ｆｕｌｌｗｉｄｔｈ", "Ελληνικά русский 中文 日本語 العربية עברית 😀",
             "e\u0301 a\u0308 Z\u0351\u0352\u0353\u0354 \u200b\u200d\ufeff", "\U0001F468\u200D\U0001F469\u200D\U0001F467",
             "\u202eevil rtl override\u202c a dull film"]

    results = predict(live.url, [{"data": {"text": text}} for text in texts]).json()["results"]

    assert all(set(choices_of(item)) <= {POSITIVE, NEGATIVE} for item in results)
    assert choices_of(results[0]) == [POSITIVE]


def test_predict_undefined_key_reads_plain_text_imports(live):
    tasks = [{"data": {"$undefined$": "tech story about tech"}}, {"data": {"text": "tech story about tech"}},
             {"data": {"text": "tech story", "other": "tech story"}}]

    results = predict(live.url, tasks, project=PLAIN).json()["results"]

    assert choices_of(results[0], "topic") == ["tech"]
    assert choices_of(results[1], "topic") == ["tech"]  # a single-key import is read whatever the key's name
    assert results[2]["result"] == []


def test_predict_undefined_key_in_sentiment_project_is_not_read(live):
    results = predict(live.url, [{"data": {"$undefined$": "a superb film", "other": 1}}]).json()["results"]

    assert results[0]["result"] == []


def test_predict_ignores_foreign_choices_in_task_predictions_and_annotations(live):
    foreign = [{"from_name": "sentiment", "to_name": "review", "type": "choices", "value": {"choices": ["Bogus"]}}]
    task = {"id": 5, "data": {"text": "a superb film"}, "predictions": [{"result": foreign, "score": 0.99}],
            "annotations": [{"result": foreign}]}

    results = predict(live.url, [task]).json()["results"]

    assert choices_of(results[0]) == [POSITIVE]


def test_predict_ten_thousand_tasks_in_one_batch(live):
    tasks = [{"id": index, "data": {"text": sentiment_text(index, index % 2 == 0)}} for index in range(10_000)]

    started = time.perf_counter()
    response = predict(live.url, tasks)
    elapsed = time.perf_counter() - started

    assert response.status_code == 200
    results = response.json()["results"]
    assert len(results) == 10_000
    assert all(len(choices_of(item)) == 1 for item in results)
    print(f"\nfigure: /predict with 10,000 tasks answered in {elapsed:.2f} s")


# -- label configs ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_setup_bad_config_is_rejected_with_reason(live, case):
    config, reason = BAD_CONFIGS[case]

    response = requests.post(f"{live.url}/setup", json={"project": "300.1", "schema": config}, timeout=10)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == "schema"
    assert re.search(reason, response.json()["message"]), response.json()["message"]


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_predict_bad_label_config_gets_empty_results(live, case):
    config, _ = BAD_CONFIGS[case]
    tasks = [{"data": {"text": "a superb film"}}, {"data": {"text": "a dull film"}}]

    response = predict(live.url, tasks, project=None, label_config=config)

    assert response.status_code == 200
    assert [item["result"] for item in response.json()["results"]] == [[], []]


def test_setup_unknown_tags_beside_choices_are_ignored(live):
    config = choices_config(TWO_CHOICES, extra='<Frobnicate name="x" toName="review"/><Header value="Read it"/>')

    response = requests.post(f"{live.url}/setup", json={"project": "301.1", "schema": config}, timeout=10)

    assert response.status_code == 200


@pytest.mark.parametrize("case", ["billion_laughs", "external_entity_file"])
def test_webhook_unsafe_project_label_config_is_ignored(live, case):
    config, _ = BAD_CONFIGS[case]
    event = {"action": "START_TRAINING", "project": {"id": TRAINED, "label_config": config}}

    response = requests.post(f"{live.url}/webhook", json=event, timeout=10)
    after = predict(live.url, [{"data": {"text": "a superb film"}}]).json()["results"]

    assert response.status_code == 202
    assert choices_of(after[0]) == [POSITIVE]  # the stored config stays in use


def test_external_entities_are_never_fetched(live, tmp_path):
    recorder = HitRecorder()
    secret = tmp_path / "secret.txt"
    secret.write_text("entity-file-marker-5b1f")
    try:
        bodies = []
        for target in (f"{recorder.url}/xxe.dtd", f"file://{secret}"):
            config = external_entity_config(target)
            bodies.append(requests.post(f"{live.url}/setup", json={"project": "302.1", "schema": config}, timeout=10))
            bodies.append(predict(live.url, [{"data": {"text": "x"}}], project=None, label_config=config))
            event = {"action": "START_TRAINING", "project": {"id": 302, "label_config": config}}
            bodies.append(requests.post(f"{live.url}/webhook", json=event, timeout=10))
        time.sleep(1.0)
    finally:
        recorder.close()

    assert recorder.hits == []
    assert [response.status_code for response in bodies] == [422, 200, 202] * 2
    assert all("entity-file-marker" not in response.text for response in bodies)


# -- training data ----------------------------------------------------------------------------------

def test_annotation_with_unknown_choice_does_not_train(live):
    setup_project(live.url, UNKNOWN_CHOICE)
    for index in range(3):
        event = annotation_event(UNKNOWN_CHOICE, 900 + index, 1900 + index, sentiment_text(index, True), "Bogus")
        assert requests.post(f"{live.url}/webhook", json=event, timeout=5).status_code == 202
    send_annotations(live.url, UNKNOWN_CHOICE, 8)

    bundle = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (live.model_dir / "projects" / str(UNKNOWN_CHOICE) / "LATEST").exists():
            bundle = latest_bundle(live.model_dir, UNKNOWN_CHOICE)
            if bundle.n_examples.get("sentiment", 0) >= 8:
                break
        time.sleep(0.2)

    assert bundle is not None
    assert bundle.n_examples["sentiment"] == 8
    assert set(bundle.classes["sentiment"]) == {POSITIVE, NEGATIVE}


# -- project ids ------------------------------------------------------------------------------------

BAD_PROJECT_IDS = {"word": "abc", "empty": "", "negative": -1, "negative_string": "-1", "float": 1.5,
                   "exponent": "1e3", "superscript_digit": "\u00b2", "bool": True, "list": [1],
                   "object_without_id": {"title": "x"}, "too_large": 2**70, "too_large_string": "9" * 40}


VERSIONS_CASES = {"word", "negative", "negative_string", "exponent", "superscript_digit", "too_large",
                  "too_large_string"}


@pytest.mark.parametrize("case", sorted(BAD_PROJECT_IDS))
def test_bad_project_id_is_rejected_everywhere(live, case):
    project = BAD_PROJECT_IDS[case]
    calls = [
        ("setup", {"project": project, "schema": SENTIMENT_CONFIG}),
        ("predict", {"project": project, "tasks": [{"data": {"text": "x"}}]}),
        ("webhook", {"action": "START_TRAINING", "project": project}),
    ]
    for route, body in calls:
        response = requests.post(f"{live.url}/{route}", json=body, timeout=5)
        assert response.status_code == 400, (route, response.text)
        assert "is not a project id" in response.json()["message"]
    if case in VERSIONS_CASES:
        response = requests.get(f"{live.url}/versions", params={"project": project}, timeout=5)
        assert response.status_code == 400, response.text


@pytest.mark.parametrize("annotation_id", [2**70, -5, "12", None, True], ids=["too_large", "negative", "string",
                                                                              "null", "bool"])
def test_webhook_bad_annotation_id_is_rejected(live, annotation_id):
    event = annotation_event(TRAINED, 1, 1, "a superb film", POSITIVE)
    event["annotation"]["id"] = annotation_id
    deletion = {"action": "ANNOTATIONS_DELETED", "project": {"id": TRAINED}, "annotations": [{"id": annotation_id}]}

    for body in (event, deletion):
        response = requests.post(f"{live.url}/webhook", json=body, timeout=5)
        assert response.status_code == 400, response.text


# -- webhook bodies ---------------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"", b"not json", b"[1, 2]", b'"ANNOTATION_CREATED"', b"\xff\xfe\x00"],
                         ids=["empty", "not_json", "list", "string", "not_utf8"])
def test_webhook_body_not_an_object_is_rejected(live, body):
    response = requests.post(f"{live.url}/webhook", data=body, headers={"Content-Type": "application/json"}, timeout=5)

    assert response.status_code == 400
    assert "Send payload" in response.json()["message"]


def test_webhook_without_project_is_rejected(live):
    event = annotation_event(TRAINED, 1, 1, "a superb film", POSITIVE)
    del event["project"]

    response = requests.post(f"{live.url}/webhook", json=event, timeout=5)

    assert response.status_code == 400
    assert response.json()["field"] == "project"


def test_webhook_annotation_with_odd_result_and_data_is_accepted(live):
    event = annotation_event(TRAINED, 77, 7077, "x", POSITIVE)
    event["annotation"]["result"] = "not a list"
    event["task"]["data"] = "not an object"

    response = requests.post(f"{live.url}/webhook", json=event, timeout=5)
    after = predict(live.url, [{"data": {"text": "a superb film"}}]).json()["results"]

    assert response.status_code == 202
    assert choices_of(after[0]) == [POSITIVE]


# -- request bodies ---------------------------------------------------------------------------------

def test_request_body_over_size_limit_gets_413(live):
    body = b'{"tasks": [], "project": 1, "pad": "' + b"x" * (65 * 1024 * 1024) + b'"}'

    response = requests.post(f"{live.url}/predict", data=body, headers={"Content-Type": "application/json"},
                             timeout=60)

    assert response.status_code == 413
    assert "MB limit" in response.json()["message"]


@pytest.mark.parametrize("route", ["setup", "predict", "webhook"])
def test_deeply_nested_json_is_rejected(live, route):
    body = '{"tasks": ' + "[" * 100_000 + "]" * 100_000 + "}"

    response = requests.post(f"{live.url}/{route}", data=body, headers={"Content-Type": "application/json"}, timeout=10)

    assert response.status_code == 400
    assert "nests too deeply" in response.json()["message"]


def test_server_still_healthy_after_bad_input(live):
    assert requests.get(f"{live.url}/health", timeout=5).json()["status"] == "UP"
    assert choices_of(predict(live.url, [{"data": {"text": "a superb film"}}]).json()["results"][0]) == [POSITIVE]
