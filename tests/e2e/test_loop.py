"""The whole loop against a real Label Studio 1.23.2, a real Redis and rq worker, and a teacher
speaking OpenAI's HTTP API (the fake server in tests/support, so answers are known in advance)."""

import time
import uuid

import pytest
import redis
import requests

from backend.datasets import load_dataset
from backend.demo import label_config_for
from backend.ls.launcher import connect_backend, create_project
from backend.store import ProjectStore
from tests.e2e.ls_fixtures import label_studio, labelling_stream_body  # noqa: F401
from tests.support.fake_openai import start_fake_openai
from tests.support.processes import start_server, start_worker

pytestmark = pytest.mark.e2e

REDIS_URL = "redis://127.0.0.1:6379/0"
SEED_SIZE = 10
BATCH_SIZE = 8


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def loop(label_studio, tmp_path_factory):  # noqa: F811
    tmp_path = tmp_path_factory.mktemp("loop")
    dataset = load_dataset("rotten_tomatoes", limit=300, seed=1)
    teacher = start_fake_openai(answer="fresh")
    queue_name = f"mraru-e2e-{uuid.uuid4().hex[:8]}"
    env = {
        "LABEL_STUDIO_URL": label_studio.url,
        "LABEL_STUDIO_API_KEY": label_studio.token,
        "REDIS_URL": REDIS_URL,
        "MRARU_QUEUE_NAME": queue_name,
        "OPENAI_BASE_URL": teacher.base_url,
        "OPENAI_API_KEY": "test-key",
        "MRARU_TEACHER_MODEL": "fake-model",
        "MRARU_SEED_SIZE": SEED_SIZE,
        "MRARU_BATCH_SIZE": BATCH_SIZE,
    }
    model_dir = tmp_path / "model_dir"
    server, url = start_server(model_dir, tmp_path, **env)
    worker = start_worker(model_dir, tmp_path, **env)
    tasks = [{"text": text, "gold": label} for text, label in zip(dataset.texts, dataset.labels)]
    project_id = create_project(label_studio.url, label_studio.token, "M-RARU e2e loop",
                                label_config_for(dataset.classes), tasks)
    connect_backend(label_studio.url, label_studio.token, project_id, url, "mraru")
    handle = type("Loop", (), dict(url=url, model_dir=model_dir, project_id=project_id, ls=label_studio,
                                   teacher=teacher, store=ProjectStore(model_dir), server=server,
                                   worker=worker))()
    yield handle
    worker.stop()
    server.stop()
    teacher.stop()
    connection = redis.Redis.from_url(REDIS_URL)
    for key in connection.scan_iter(f"*{queue_name}*"):
        connection.delete(key)


def ls_get(loop, path, **params):
    response = requests.get(f"{loop.ls.url}/api/{path}", params=params, timeout=60,
                            headers={"Authorization": f"Token {loop.ls.token}"})
    response.raise_for_status()
    return response.json()


def task(loop, task_id):
    return ls_get(loop, f"tasks/{task_id}")


def test_round_one_prelabels_random_seed_set(loop):
    first = wait_for(lambda: loop.store.rounds(loop.project_id), 180, "round 1")[0]
    picked = first["task_ids"]

    assert len(picked) == SEED_SIZE
    assert first["student_version"] == "mraru-v0"
    assert first["selection"]["mean_uncertainty"] is None
    assert first["prelabelled"] == SEED_SIZE
    for rank, task_id in enumerate(picked, start=1):
        stored = task(loop, task_id)
        assert stored["data"]["mraru_rank"] == first["first_rank"] + rank - 1
        predictions = stored["predictions"]
        assert len(predictions) == 1
        assert predictions[0]["model_version"] == "mraru-v0"
        assert predictions[0]["result"][0]["value"]["choices"] == ["fresh"]
    assert ls_get(loop, f"projects/{loop.project_id}")["model_version"] == "mraru-v0"


def test_queue_head_is_round_one_in_order_then_retrain(loop):
    first = wait_for(lambda: loop.store.rounds(loop.project_id), 180, "round 1")[0]
    view_id = first["view_id"]
    body = labelling_stream_body(loop.ls.url, loop.ls.token, view_id)
    headers = {"Authorization": f"Token {loop.ls.token}"}

    served = []
    for _ in range(SEED_SIZE):
        response = requests.post(f"{loop.ls.url}/api/dm/actions", headers=headers, json=body, timeout=60,
                                 params={"id": "next_task", "project": loop.project_id, "tabID": view_id})
        response.raise_for_status()
        current = response.json()
        served.append(current["id"])
        result = [{"from_name": "label", "to_name": "text", "type": "choices",
                   "value": {"choices": [current["data"]["gold"]]}}]
        created = requests.post(f"{loop.ls.url}/api/tasks/{current['id']}/annotations/", headers=headers,
                                json={"result": result, "was_cancelled": False}, timeout=60)
        created.raise_for_status()

    assert served == first["task_ids"]
    version = wait_for(lambda: loop.store.latest_version(loop.project_id), 120, "a retrain")
    assert version >= 1
    setup = requests.post(f"{loop.url}/setup", json={"project": str(loop.project_id), "schema":
                                                      ls_get(loop, f"projects/{loop.project_id}")["label_config"]},
                          timeout=5).json()
    assert setup["model_version"] == f"mraru-v{loop.store.latest_version(loop.project_id)}"


def test_round_two_uses_student_and_picks_new_tasks(loop):
    rounds = wait_for(lambda: [r for r in loop.store.rounds(loop.project_id) if r["student_version"] != "mraru-v0"],
                      180, "a round with a trained student")
    first = loop.store.rounds(loop.project_id)[0]
    second = rounds[0]

    assert len(second["task_ids"]) == BATCH_SIZE
    assert not set(second["task_ids"]) & set(first["task_ids"])
    assert second["selection"]["n_scored"] >= BATCH_SIZE
    assert second["selection"]["mean_uncertainty"] is not None
    stored = task(loop, second["task_ids"][0])
    assert stored["predictions"][-1]["model_version"] == second["student_version"]
    project_version = wait_for(
        lambda: ls_get(loop, f"projects/{loop.project_id}")["model_version"] != "mraru-v0"
        and ls_get(loop, f"projects/{loop.project_id}")["model_version"], 60, "project model_version update")
    assert project_version.startswith("mraru-v")


def test_predict_through_label_studio_uses_student(loop):
    wait_for(lambda: loop.store.latest_version(loop.project_id), 120, "a retrain")
    unlabelled = [t for t in ls_get(loop, "tasks", project=loop.project_id, page_size=300)["tasks"]
                  if not t["total_annotations"]][:3]
    headers = {"Authorization": f"Token {loop.ls.token}"}

    response = requests.post(f"{loop.ls.url}/api/dm/actions", headers=headers, timeout=120,
                             params={"id": "retrieve_tasks_predictions", "project": loop.project_id},
                             json={"selectedItems": {"all": False, "included": [t["id"] for t in unlabelled]}})
    response.raise_for_status()

    version = f"mraru-v{loop.store.latest_version(loop.project_id)}"
    for item in unlabelled:
        predictions = task(loop, item["id"])["predictions"]
        versions = [prediction["model_version"] for prediction in predictions]
        assert any(v.startswith("mraru-v") and v != "mraru-v0" for v in versions), versions
        assert all(0.0 <= (p["score"] or 0.0) <= 1.0 for p in predictions)
    assert version.startswith("mraru-v")
