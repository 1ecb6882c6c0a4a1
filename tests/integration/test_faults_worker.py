"""`mraru worker` killed with SIGKILL in the middle of retrains, twenty times in a row.

Each kill lands while a retrain of 1,200+ annotations runs. The previous version must keep
serving, and no half-written artifact may ever be loaded. The killed retrain must be redone (the
server re-queues owed jobs once the dead job's lock expires). The final student must be trained
on every annotation sent.
"""

import os
import pickle
import random
import re
import signal
import sqlite3
import time
import uuid

import requests

from tests.integration.conftest import SENTIMENT_CONFIG, annotation_event, sentiment_text
from tests.integration.test_faults_label_studio import backend_env, clean_queue, setup_project, wait_until
from tests.support.processes import start_server, start_worker

PROJECT = 91
BASE = 1200
KILLS = 20
POSITIVE, NEGATIVE = "Positive / good", "Négatif"


def annotate(session, url: str, task_id: int) -> None:
    positive = task_id % 2 == 0
    event = annotation_event(PROJECT, task_id, 100000 + task_id, sentiment_text(task_id, positive),
                             POSITIVE if positive else NEGATIVE)
    response = session.post(f"{url}/webhook", json=event, timeout=10)
    assert response.status_code == 202, response.text


def requested(model_dir) -> int:
    with sqlite3.connect(model_dir / "state.sqlite3", timeout=30) as connection:
        row = connection.execute("SELECT requested FROM job_requests WHERE kind = 'retrain' AND project_id = ?",
                                 (PROJECT,)).fetchone()
    return row[0] if row else 0


def latest(model_dir):
    """Load the published version the way a server does; a torn artifact would fail here."""
    directory = model_dir / "projects" / str(PROJECT)
    number = int((directory / "LATEST").read_text())
    with open(directory / f"v{number}.pkl", "rb") as handle:
        return pickle.load(handle)


def started_at_least(worker, seq: int) -> tuple[int, int] | None:
    """Return `(log offset, job process id)` of a retrain serving request `seq` or later."""
    pattern = re.compile(rf"\[(\d+)\] project={PROJECT} job=\S+ retrain started \(request (\d+)\)")
    for match in pattern.finditer(worker.log_text()):
        if int(match.group(2)) >= seq:
            return match.end(), int(match.group(1))
    return None


def kill_worker(worker, job_pid: int) -> None:
    """SIGKILL the worker and the job process it forked (rq puts that one in its own group)."""
    for kill in (lambda: os.kill(job_pid, signal.SIGKILL), lambda: os.killpg(worker.pid, signal.SIGKILL)):
        try:
            kill()
        except ProcessLookupError:
            pass
    worker.process.wait(10)
    worker.stop()


def retrain_done(model_dir) -> bool:
    with sqlite3.connect(model_dir / "state.sqlite3", timeout=30) as connection:
        row = connection.execute("SELECT requested, done FROM job_requests WHERE kind = 'retrain' "
                                 "AND project_id = ?", (PROJECT,)).fetchone()
    return bool(row) and row[0] == row[1]


def fit_seconds(workers, examples: int) -> float:
    """Return the shortest fit time the workers logged for a retrain on `examples` annotations."""
    pattern = re.compile(rf"project={PROJECT} published \S+ \(\{{'sentiment': {examples}\}} examples, ([\d.]+) s\)")
    return min(float(seconds) for worker in workers for seconds in pattern.findall(worker.log_text()))


def predict(url: str) -> dict:
    response = requests.post(f"{url}/predict", json={"tasks": [{"data": {"text": "a superb and moving film"}}],
                                                     "project": PROJECT}, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["results"][0]


def test_worker_sigkill_redoes_retrain(tmp_path):
    rng = random.Random(7)
    queue_name = f"mraru-kill-{uuid.uuid4().hex[:8]}"
    env = backend_env(queue_name, MRARU_STUDENT="svm")
    model_dir = tmp_path / "model_dir"
    server, url = start_server(model_dir, tmp_path, **env)
    workers = [start_worker(model_dir, tmp_path, name=f"worker-{n}", **env) for n in range(2)]
    spawned = len(workers)
    session = requests.Session()
    killed_mid_retrain = 0
    try:
        setup_project(url, PROJECT, SENTIMENT_CONFIG)
        for task_id in range(1, BASE + 1):
            annotate(session, url, task_id)
        wait_until(lambda: (model_dir / "projects" / str(PROJECT) / "LATEST").exists()
                   and latest(model_dir).n_examples["sentiment"] == BASE, 180, "the first student did not train")
        wait_until(lambda: retrain_done(model_dir), 60, "the first retrains did not settle")
        # Kill within the first half of a fit, so that a fast machine does not finish the retrain
        # before the kill lands.
        window = 0.5 * fit_seconds(workers, BASE)

        for kill in range(KILLS):
            seq = requested(model_dir) + 1
            annotate(session, url, BASE + kill + 1)
            before = latest(model_dir)
            victim = wait_until(lambda: next((w for w in workers if started_at_least(w, seq)), None), 60,
                                f"kill {kill}: no retrain started for request {seq}", interval=0.02)
            offset, job_pid = started_at_least(victim, seq)
            time.sleep(rng.uniform(0.0, window))
            kill_worker(victim, job_pid)
            killed_mid_retrain += f"project={PROJECT} published" not in victim.log_text()[offset:]
            workers.remove(victim)
            workers.append(start_worker(model_dir, tmp_path, name=f"worker-{spawned}", **env))
            spawned += 1

            after = latest(model_dir)
            served = predict(url)
            assert after.version >= before.version
            assert served["model_version"] == after.model_version
            assert served["result"][0]["value"]["choices"] == [POSITIVE]

        # No new request comes: the owed retrain is re-queued by the server alone.
        final = wait_until(lambda: latest(model_dir).n_examples["sentiment"] == BASE + KILLS and latest(model_dir),
                           120, "the killed retrains were not redone")
        served = predict(url)
        leftovers = list((model_dir / "projects" / str(PROJECT)).glob(".*.tmp"))
        server_log = server.log_text()
    finally:
        session.close()
        for worker in workers:
            worker.stop()
        server.stop()
        clean_queue(queue_name)

    assert served["model_version"] == final.model_version
    assert killed_mid_retrain >= KILLS // 2
    assert "Traceback" not in server_log
    assert leftovers == []
