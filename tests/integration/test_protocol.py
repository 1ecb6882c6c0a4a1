"""The Label Studio 1.23 protocol over real HTTP, with a real Redis and a real rq worker."""

import pickle
import time

import requests

from tests.integration.conftest import (
    SENTIMENT_CONFIG,
    TOPIC_CONFIG,
    annotation_event,
    sentiment_text,
)
from tests.support.processes import start_server

POSITIVE, NEGATIVE = "Positive / good", "Négatif"


def setup_project(url: str, project_id: int, config: str = SENTIMENT_CONFIG) -> str:
    response = requests.post(f"{url}/setup", json={"project": f"{project_id}.1733300000", "schema": config,
                                                    "hostname": "http://127.0.0.1:8080", "access_token": "x"},
                             timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def wait_for_version(url: str, project_id: int, config: str, not_version: str, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = setup_project(url, project_id, config)
        if version != not_version:
            return version
        time.sleep(0.2)
    raise AssertionError(f"project {project_id} stayed at {not_version} for {timeout} s")


def send_annotations(url: str, project_id: int, count: int, start_id: int = 1) -> None:
    for offset in range(count):
        task_id = start_id + offset
        positive = offset % 2 == 0
        event = annotation_event(project_id, task_id, 1000 + task_id, sentiment_text(task_id, positive),
                                 POSITIVE if positive else NEGATIVE)
        response = requests.post(f"{url}/webhook", json=event, timeout=5)
        assert response.status_code == 202, response.text


def latest_bundle(model_dir, project_id):
    version = int((model_dir / "projects" / str(project_id) / "LATEST").read_text())
    with open(model_dir / "projects" / str(project_id) / f"v{version}.pkl", "rb") as handle:
        return pickle.load(handle)


def test_health_reports_up(backend):
    response = requests.get(f"{backend.url}/health", timeout=5)

    assert response.status_code == 200
    assert response.json()["status"] == "UP"


def test_setup_new_project_reports_version_zero(backend):
    assert setup_project(backend.url, 7) == "mraru-v0"


def test_setup_unsupported_config_explains_fix(backend):
    response = requests.post(f"{backend.url}/setup", json={"project": "8.1", "schema": "<View><Text name='t' value='$t'/></View>"},
                             timeout=5)

    assert response.status_code == 422
    assert "no <Choices> control" in response.json()["message"]


def test_setup_rejects_non_numeric_project(backend):
    response = requests.post(f"{backend.url}/setup", json={"project": "abc", "schema": SENTIMENT_CONFIG}, timeout=5)

    assert response.status_code == 400
    assert "'abc' is not a project id" in response.json()["message"]


def test_predict_before_training_returns_item_per_task(backend):
    setup_project(backend.url, 9)
    tasks = [{"id": 1, "data": {"text": "fine"}}, {"id": 2, "data": {}}, {"id": 3, "data": {"text": "   "}}]

    response = requests.post(f"{backend.url}/predict", json={"tasks": tasks, "project": "9.1",
                                                             "label_config": SENTIMENT_CONFIG}, timeout=5)

    results = response.json()["results"]
    assert response.status_code == 200
    assert len(results) == 3
    assert all(item == {"result": [], "score": 0.0, "model_version": "mraru-v0"} for item in results)


def test_predict_without_tasks_list_is_rejected(backend):
    response = requests.post(f"{backend.url}/predict", json={"project": "9"}, timeout=5)

    assert response.status_code == 400
    assert "tasks must be a list" in response.json()["message"]


def test_webhook_malformed_payload_asks_for_send_payload(backend):
    cases = [
        (b"", "application/json"),
        (b"not json", "application/json"),
        (b'{"action": "ANNOTATION_CREATED", "project": {"id": 3}}', "application/json"),
        (b'{"project": {"id": 3}}', "application/json"),
    ]
    for body, content_type in cases:
        response = requests.post(f"{backend.url}/webhook", data=body, headers={"Content-Type": content_type},
                                 timeout=5)
        assert response.status_code == 400, body
        assert "Send payload" in response.json()["message"], body


def test_webhook_ignores_other_events(backend):
    response = requests.post(f"{backend.url}/webhook", json={"action": "PROJECT_UPDATED", "project": {"id": 3}},
                             timeout=5)

    assert response.status_code == 200
    assert response.json()["status"] == "ignored"


def test_annotations_retrain_and_predict_exact_choices(backend):
    setup_project(backend.url, 11)
    send_annotations(backend.url, 11, 12)

    version = wait_for_version(backend.url, 11, SENTIMENT_CONFIG, "mraru-v0")
    tasks = [{"id": 100, "data": {"text": "a wonderful and brilliant film"}},
             {"id": 101, "data": {"text": None}},
             {"id": 102, "data": {"text": "a dull and tedious film"}}]
    response = requests.post(f"{backend.url}/predict", json={"tasks": tasks, "project": "11.1"}, timeout=5)
    results = response.json()["results"]

    assert version.startswith("mraru-v")
    assert [item["model_version"] for item in results] == [version] * 3
    assert results[0]["result"][0]["value"]["choices"] == [POSITIVE]
    assert results[0]["result"][0]["from_name"] == "sentiment"
    assert results[0]["result"][0]["to_name"] == "review"
    assert results[1]["result"] == []
    assert results[2]["result"][0]["value"]["choices"] == [NEGATIVE]
    assert 0.0 < results[0]["score"] <= 1.0


def test_retrains_are_coalesced_and_see_every_annotation(backend):
    setup_project(backend.url, 12)
    send_annotations(backend.url, 12, 60)

    deadline = time.monotonic() + 90
    bundle = None
    while time.monotonic() < deadline:
        if (backend.model_dir / "projects" / "12" / "LATEST").exists():
            bundle = latest_bundle(backend.model_dir, 12)
            if bundle.n_examples.get("sentiment") == 60:
                break
        time.sleep(0.3)

    assert bundle is not None
    assert bundle.n_examples["sentiment"] == 60
    # 60 events while training runs collapse into a handful of retrains, never one per event.
    assert bundle.version < 10


def test_model_version_survives_restart(backend):
    setup_project(backend.url, 13)
    send_annotations(backend.url, 13, 8)
    version = wait_for_version(backend.url, 13, SENTIMENT_CONFIG, "mraru-v0")
    backend.server.stop()

    server, url = start_server(backend.model_dir, backend.tmp_path, **backend.env)
    try:
        assert setup_project(url, 13) == version
    finally:
        server.stop()


def test_skipped_annotations_are_not_trained_on(backend):
    setup_project(backend.url, 14)
    send_annotations(backend.url, 14, 8)
    skipped = annotation_event(14, 50, 5050, "skipped text", None, was_cancelled=True)
    assert requests.post(f"{backend.url}/webhook", json=skipped, timeout=5).status_code == 202

    time.sleep(0.5)
    wait_for_version(backend.url, 14, SENTIMENT_CONFIG, "mraru-v0")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and latest_bundle(backend.model_dir, 14).n_examples["sentiment"] != 8:
        time.sleep(0.2)

    assert latest_bundle(backend.model_dir, 14).n_examples["sentiment"] == 8


def test_deleted_annotations_leave_training_set(backend):
    setup_project(backend.url, 15)
    send_annotations(backend.url, 15, 10)
    first = wait_for_version(backend.url, 15, SENTIMENT_CONFIG, "mraru-v0")
    deletion = {"action": "ANNOTATIONS_DELETED", "annotations": [{"id": 1001}, {"id": 1002}], "project": {"id": 15}}

    response = requests.post(f"{backend.url}/webhook", json=deletion, timeout=5)
    second = wait_for_version(backend.url, 15, SENTIMENT_CONFIG, first)

    assert response.status_code == 202
    assert second != first
    assert latest_bundle(backend.model_dir, 15).n_examples["sentiment"] == 8


def test_start_training_event_retrains(backend):
    setup_project(backend.url, 16)
    send_annotations(backend.url, 16, 6)
    first = wait_for_version(backend.url, 16, SENTIMENT_CONFIG, "mraru-v0")

    response = requests.post(f"{backend.url}/webhook", json={"action": "START_TRAINING", "project": {"id": 16}},
                             timeout=5)
    second = wait_for_version(backend.url, 16, SENTIMENT_CONFIG, first)

    assert response.status_code == 202
    assert int(second.rsplit("v", 1)[1]) == int(first.rsplit("v", 1)[1]) + 1


def test_projects_keep_their_own_labels(backend):
    setup_project(backend.url, 21)
    setup_project(backend.url, 22, TOPIC_CONFIG)
    send_annotations(backend.url, 21, 8)
    topics = ["sport", "tech", "politics"]
    for index in range(9):
        topic = topics[index % 3]
        event = annotation_event(22, 500 + index, 9000 + index, f"{topic} story number {index} about {topic}", topic,
                                 from_name="topic", to_name="body", key="$undefined$")
        event["annotation"]["result"].append({"from_name": "tags", "to_name": "body", "type": "choices",
                                              "value": {"choices": ["breaking"] if index % 2 else ["long read"]}})
        assert requests.post(f"{backend.url}/webhook", json=event, timeout=5).status_code == 202

    wait_for_version(backend.url, 21, SENTIMENT_CONFIG, "mraru-v0")
    wait_for_version(backend.url, 22, TOPIC_CONFIG, "mraru-v0")
    sentiment = requests.post(f"{backend.url}/predict", json={"tasks": [{"data": {"text": "a superb film"}}],
                                                              "project": 21}, timeout=5).json()["results"][0]
    topic = requests.post(f"{backend.url}/predict", json={"tasks": [{"data": {"$undefined$": "tech story about tech"}}],
                                                          "project": 22}, timeout=5).json()["results"][0]

    assert sentiment["result"][0]["value"]["choices"][0] in {POSITIVE, NEGATIVE}
    assert {item["from_name"] for item in topic["result"]} <= {"topic", "tags"}
    assert topic["result"][0]["value"]["choices"] == ["tech"]


def test_versions_lists_project_history(backend):
    setup_project(backend.url, 17)
    send_annotations(backend.url, 17, 6)
    version = wait_for_version(backend.url, 17, SENTIMENT_CONFIG, "mraru-v0")

    response = requests.get(f"{backend.url}/versions", params={"project": 17}, timeout=5)

    assert response.json()["versions"][0] == "mraru-v0"
    assert response.json()["versions"][-1] == version


def test_predict_unsupported_config_returns_empty_results(backend):
    config = "<View><Text name='t' value='$text'/><Labels name='l' toName='t'><Label value='x'/></Labels></View>"
    tasks = [{"data": {"text": "one"}}, {"data": {"text": "two"}}]

    response = requests.post(f"{backend.url}/predict", json={"tasks": tasks, "label_config": config}, timeout=5)

    assert response.status_code == 200
    assert [item["result"] for item in response.json()["results"]] == [[], []]


def test_second_server_process_serves_new_version(backend):
    second, second_url = start_server(backend.model_dir, backend.tmp_path, **backend.env)
    try:
        setup_project(backend.url, 18)
        assert setup_project(second_url, 18) == "mraru-v0"
        send_annotations(backend.url, 18, 8)
        version = wait_for_version(backend.url, 18, SENTIMENT_CONFIG, "mraru-v0")

        prediction = requests.post(f"{second_url}/predict", json={"tasks": [{"data": {"text": "a superb film"}}],
                                                                  "project": 18}, timeout=5).json()["results"][0]
    finally:
        second.stop()

    assert prediction["model_version"] == version
    assert prediction["result"][0]["value"]["choices"] == [POSITIVE]
