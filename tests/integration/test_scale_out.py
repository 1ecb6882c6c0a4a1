"""Two `mraru serve` and two `mraru worker` processes on one Redis and one MODEL_DIR act as one backend.

Label Studio is the fake REST API of test_faults_label_studio.py, the teacher the fake OpenAI
server of tests/support. Webhooks alternate between the two servers, as behind a load balancer.
"""

import re
import uuid
from datetime import datetime

import requests

from backend.store import ProjectStore
from tests.integration.test_faults_label_studio import (
    FakeLabelStudio,
    backend_env,
    clean_queue,
    setup_project,
    wait_until,
)
from tests.support.fake_openai import start_fake_openai
from tests.support.processes import start_server, start_worker

PROJECTS = (97, 98)
TASKS = 40
WAVES = 2
TEXTS = ["a wonderful and moving film", "a dull and tedious film", "a great film", "an awful film"]
_STAMP = r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) "


def settled(store: ProjectStore, min_rounds: int) -> bool:
    """True when no job is owed and every project has `min_rounds` rounds or more."""
    return not store.owed_jobs() and all(len(store.rounds(p)) >= min_rounds for p in PROJECTS)


def retrain_runs(logs: str, project_id: int) -> list[tuple[datetime, datetime]]:
    """Return (start, end) of each retrain of a project that the workers' logs show."""
    starts, ends = {}, {}
    for line in logs.splitlines():
        stamp = re.match(_STAMP, line)
        if not stamp:
            continue
        when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S,%f")
        started = re.search(rf"project={project_id} job=(retrain-\S+) retrain started", line)
        if started:
            starts[started.group(1)] = when
        ended = re.search(rf"Job OK \((retrain-{project_id}-\S+)\)", line)
        if ended:
            ends[ended.group(1)] = when
    return sorted((starts[job], ends[job]) for job in starts)


def test_scale_out_acts_as_one_backend(tmp_path):
    queue_name = f"mraru-scale-{uuid.uuid4().hex[:8]}"
    teacher = start_fake_openai()
    ls = FakeLabelStudio()
    for project_id in PROJECTS:
        ls.add_tasks(project_id, range(project_id * 100 + 1, project_id * 100 + TASKS + 1))
    env = backend_env(queue_name, ls, teacher.base_url)
    model_dir = tmp_path / "model_dir"
    store = ProjectStore(model_dir)
    servers = [start_server(model_dir, tmp_path, **env) for _ in range(2)]
    urls = [url for _, url in servers]
    workers = [start_worker(model_dir, tmp_path, name=f"worker-{n}", **env) for n in range(2)]
    events = 0
    try:
        for project_id in PROJECTS:
            for url in urls:
                setup_project(url, project_id)
        wait_until(lambda: settled(store, 1), 120, "the first rounds did not settle")
        for wave in range(WAVES):
            for project_id in PROJECTS:
                for task_id in store.rounds(project_id)[-1]["task_ids"]:
                    body = ls.annotate(task_id, 60000 + task_id)
                    response = requests.post(f"{urls[events % 2]}/webhook", json=body, timeout=10)
                    assert response.status_code == 202, response.text
                    events += 1
            wait_until(lambda: settled(store, wave + 2), 180, f"wave {wave} did not settle")

        setups = {(p, url): setup_project(url, p) for p in PROJECTS for url in urls}
        tasks = [{"data": {"text": text}} for text in TEXTS]
        predictions = {(p, url): requests.post(f"{url}/predict", json={"tasks": tasks, "project": p},
                                               timeout=10).json()["results"] for p in PROJECTS for url in urls}
        stats = teacher.stats()
        sent_texts = [body["messages"][-1]["content"] for body in teacher.requests()]
        logs = "".join(worker.log_text() for worker in workers)
        server_logs = "".join(server.log_text() for server, _ in servers)
    finally:
        for worker in workers:
            worker.stop()
        for server, _ in servers:
            server.stop()
        ls.stop()
        teacher.stop()
        clean_queue(queue_name)

    picks = [task_id for p in PROJECTS for record in store.rounds(p) for task_id in record["task_ids"]]
    for project_id in PROJECTS:
        version = store.model_version(project_id)
        bundle = store.load_latest(project_id)
        runs = retrain_runs(logs, project_id)
        assert {setups[(project_id, url)] for url in urls} == {version}
        assert predictions[(project_id, urls[0])] == predictions[(project_id, urls[1])]
        assert {item["model_version"] for item in predictions[(project_id, urls[0])]} == {version}
        assert bundle.n_examples["sentiment"] == 8 * WAVES
        assert all(end <= start for (_, end), (start, _) in zip(runs, runs[1:]))
        assert store.latest_version(project_id) <= len(runs) < events
        assert server_logs.count(f"project={project_id} registered") == 1
    assert len(picks) == len(set(picks))
    assert stats["generations"] == len(picks)
    assert len(sent_texts) == len(set(sent_texts))
    assert all("started (request" in worker.log_text() for worker in workers)
