"""A backend restarted in the middle of a round keeps its versions, rounds and cached teacher labels.

Label Studio is the fake REST API of test_faults_label_studio.py and the teacher is the fake
OpenAI server of tests/support, which counts every request it is sent.
"""

import uuid

import requests

from backend.store import ProjectStore
from tests.integration.test_faults_label_studio import (
    FakeLabelStudio,
    backend_env,
    clean_queue,
    deferrals,
    rounds_of,
    setup_project,
    wait_until,
)
from tests.support.fake_openai import start_fake_openai
from tests.support.processes import start_server, start_worker

PROJECT = 96


def annotate_round(ls: FakeLabelStudio, url: str, record: dict) -> None:
    """Annotate a round's picks in Label Studio, then press "Start Training" once."""
    for task_id in record["task_ids"]:
        ls.annotate(task_id, 50000 + task_id)
    response = requests.post(f"{url}/webhook", json={"action": "START_TRAINING", "project": {"id": PROJECT}},
                             timeout=10)
    assert response.status_code == 202, response.text


def test_restart_keeps_versions_and_cache(tmp_path):
    queue_name = f"mraru-restart-{uuid.uuid4().hex[:8]}"
    teacher = start_fake_openai()
    ls = FakeLabelStudio()
    ls.add_tasks(PROJECT, range(PROJECT * 100 + 1, PROJECT * 100 + 41))
    env = backend_env(queue_name, ls, teacher.base_url)
    model_dir = tmp_path / "model_dir"
    store = ProjectStore(model_dir)
    server, url = start_server(model_dir, tmp_path, **env)
    worker = start_worker(model_dir, tmp_path, **env)
    processes = [server, worker]
    try:
        setup_project(url, PROJECT)
        first = wait_until(lambda: rounds_of(model_dir, PROJECT), 90, "no first round")[0]
        annotate_round(ls, url, first)
        wait_until(lambda: len(rounds_of(model_dir, PROJECT)) == 2, 90, "no second round")

        # The third round pays the teacher, then fails to write its ranks and is deferred.
        ls.fail(503, paths="/api/tasks/")
        annotate_round(ls, url, rounds_of(model_dir, PROJECT)[1])
        wait_until(lambda: deferrals(model_dir, "round", PROJECT) >= 1, 90, "the third round was not deferred")
        version = store.model_version(PROJECT)
        paid = teacher.stats()["generations"]
        rounds_before = rounds_of(model_dir, PROJECT)

        for process in processes:
            process.stop()
        server, url = start_server(model_dir, tmp_path, **env)
        worker = start_worker(model_dir, tmp_path, name="worker-restarted", **env)
        processes = [server, worker]

        setup_version = setup_project(url, PROJECT)
        versions = requests.get(f"{url}/versions", params={"project": PROJECT}, timeout=10).json()["versions"]
        rounds_after_restart = rounds_of(model_dir, PROJECT)
        ls.fail(None)
        third = wait_until(lambda: len(rounds_of(model_dir, PROJECT)) == 3 and rounds_of(model_dir, PROJECT)[2],
                           90, "the deferred round did not resume after the restart")
        generations = teacher.stats()["generations"]
    finally:
        for process in processes:
            process.stop()
        ls.stop()
        teacher.stop()
        clean_queue(queue_name)

    assert setup_version == version != "mraru-v0"
    assert versions[0] == "mraru-v0"
    assert versions[-1] == version
    assert rounds_after_restart == rounds_before
    assert [record["round"] for record in rounds_before] == [1, 2]
    assert paid == 24
    assert generations == paid
    assert third["teacher_usage"]["sentiment"]["calls"] == 0
    assert third["teacher_usage"]["sentiment"]["cached"] == 8
    assert third["prelabelled"] == 8
