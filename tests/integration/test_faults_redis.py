"""Redis stopped and restarted empty under a running backend.

The test runs its own `redis-server` on a free port without persistence, so a restart loses every
queued job, mark and lock, as a crashed Redis without a volume would. While Redis is down,
/health, /setup and /predict respond from MODEL_DIR, and /webhook stores the annotation and returns
202 with no job id. Once Redis is back, the server re-queues the owed retrain, and the final
student is trained on every annotation.
"""

import shutil
import signal
import time
import uuid

import redis
import requests
from rq import Worker
from rq.worker import WorkerStatus

from backend.store import ProjectStore
from tests.integration.conftest import SENTIMENT_CONFIG, annotation_event, sentiment_text
from tests.integration.test_faults_label_studio import backend_env, log_lines, setup_project, wait_until
from tests.support.processes import ManagedProcess, free_port, start_server, start_worker

PROJECT = 95
POSITIVE, NEGATIVE = "Positive / good", "Négatif"


def start_redis(port: int, tmp_path) -> ManagedProcess:
    process = ManagedProcess(f"redis-{port}", [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
                                               "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                             {}, tmp_path / f"redis-{port}.log")
    connection = redis.Redis(port=port, socket_connect_timeout=1)
    wait_until(lambda: _pings(connection), 20, "redis-server did not start")
    return process


def _pings(connection) -> bool:
    try:
        return connection.ping()
    except redis.RedisError:
        return False


def annotate(url: str, task_id: int) -> requests.Response:
    positive = task_id % 2 == 0
    event = annotation_event(PROJECT, task_id, 7000 + task_id, sentiment_text(task_id, positive),
                             POSITIVE if positive else NEGATIVE)
    return requests.post(f"{url}/webhook", json=event, timeout=10)


def idle(model_dir, port: int) -> bool:
    """True when no job is owed and every rq worker on this Redis is idle."""
    workers = Worker.all(connection=redis.Redis(port=port))
    return not ProjectStore(model_dir).owed_jobs() and bool(workers) and all(
        worker.get_state() == WorkerStatus.IDLE for worker in workers)


def trained_on(model_dir) -> int:
    bundle = ProjectStore(model_dir).load_latest(PROJECT)
    return bundle.n_examples["sentiment"] if bundle else 0


def test_redis_restart_loses_no_annotation(tmp_path):
    port = free_port()
    redis_server = start_redis(port, tmp_path)
    env = backend_env(f"mraru-redis-{uuid.uuid4().hex[:8]}", redis_url=f"redis://127.0.0.1:{port}/0")
    model_dir = tmp_path / "model_dir"
    server, url = start_server(model_dir, tmp_path, **env)
    worker = start_worker(model_dir, tmp_path, **env)
    workers = [worker]
    try:
        setup_project(url, PROJECT, SENTIMENT_CONFIG)
        for task_id in range(1, 9):
            assert annotate(url, task_id).status_code == 202
        wait_until(lambda: trained_on(model_dir) == 8, 60, "no first student")
        wait_until(lambda: idle(model_dir, port), 60, "the first jobs did not finish")
        version = ProjectStore(model_dir).model_version(PROJECT)

        # Phase 1: Redis dies while the worker idles; traffic goes on. (rq's worker exits when
        # Redis disappears during a job, so this phase waits for the jobs to finish first.)
        redis_server.stop(signal.SIGKILL)
        health = requests.get(f"{url}/health", timeout=10)
        setup_version = setup_project(url, PROJECT, SENTIMENT_CONFIG)
        predicted = requests.post(f"{url}/predict", json={"tasks": [{"data": {"text": "a superb film"}}],
                                                          "project": PROJECT}, timeout=10)
        hooks = []
        for task_id in range(9, 15):  # an outage of about three seconds
            hooks.append(annotate(url, task_id))
            time.sleep(0.5)
        redis_server = start_redis(port, tmp_path)
        wait_until(lambda: trained_on(model_dir) == 14, 90, "the retrain owed during the outage did not run")

        # Phase 2: a retrain queued in Redis is lost with it.
        worker.stop()
        for task_id in range(15, 19):
            assert annotate(url, task_id).status_code == 202
        redis_server.stop(signal.SIGKILL)
        redis_server = start_redis(port, tmp_path)
        workers.append(start_worker(model_dir, tmp_path, name="worker-2", **env))
        wait_until(lambda: trained_on(model_dir) == 18, 90, "the retrain lost with Redis was not re-derived")
        server_log = server.log_text()
    finally:
        for process in workers:
            process.stop()
        server.stop()
        redis_server.stop()

    assert health.status_code == 200
    assert health.json()["status"] == "UP"
    assert setup_version == version
    assert predicted.status_code == 200
    assert predicted.json()["results"][0]["model_version"] == version
    assert predicted.json()["results"][0]["result"][0]["value"]["choices"] == [POSITIVE]
    assert all(response.status_code == 202 and response.json()["job_id"] is None for response in hooks)
    assert len(log_lines(server, r"WARNING .*Redis at REDIS_URL is unreachable")) == 1
    assert "Redis is reachable again" in server_log
    assert "Traceback" not in server_log
