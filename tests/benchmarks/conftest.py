"""Fixtures for the benchmarks: a trained `mraru serve` with a worker, the reference backend, the report.

Options (environment):
- MRARU_BENCH_REFERENCE_URL: base URL of a running Label Studio sklearn example backend, measured
  side by side with ours. When it is unset, only ours is measured.
- MRARU_BENCH_LS_PORT, MRARU_BENCH_LS_TOKEN: port and 40-character token of the Label Studio that
  the benchmark starts to train the reference; the reference must have been started with
  LABEL_STUDIO_HOST=http://127.0.0.1:<port> and LABEL_STUDIO_API_KEY=<token>.
- MRARU_BENCH_REDIS_DB: an empty Redis database on 127.0.0.1:6379 (default 14), flushed at the end.
- MRARU_BENCH_OUT: where the JSON results go (default .work/benchmarks/results.json).
- MRARU_BENCH_WORKDIR: model dirs, Label Studio data and logs (default .work/benchmarks/run); kept
  after the run for profiling.
"""

import json
import os
import platform
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import redis
import requests

from backend.datasets import load_dataset
from backend.store import ProjectStore
from tests.support.processes import start_server, start_worker

REPO = Path(__file__).resolve().parents[2]
PROJECT_ID = 1
PROJECT = f"{PROJECT_ID}.1733300000"
FROM_NAME, TO_NAME, VALUE_KEY = "sentiment", "text", "text"
LABEL_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="fresh"/>
    <Choice value="rotten"/>
  </Choices>
</View>"""
N_TRAIN = 2000
N_HELDOUT = 2000
SEED = 0
REDIS_DB = int(os.environ.get("MRARU_BENCH_REDIS_DB", "14"))
REFERENCE_URL = os.environ.get("MRARU_BENCH_REFERENCE_URL", "").rstrip("/")
LS_PORT = int(os.environ.get("MRARU_BENCH_LS_PORT", "28080"))
LS_TOKEN = os.environ.get("MRARU_BENCH_LS_TOKEN", "mraru-bench-reference-token-000000000000")
OUT = Path(os.environ.get("MRARU_BENCH_OUT") or REPO / ".work" / "benchmarks" / "results.json")
WORKDIR = Path(os.environ.get("MRARU_BENCH_WORKDIR") or REPO / ".work" / "benchmarks" / "run")
JSON_HEADERS = {"Content-Type": "application/json"}

REPORT: dict = {}


def summarize(seconds) -> dict:
    """Return latency percentiles in milliseconds."""
    ms = np.asarray(seconds, dtype=float) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"n": int(ms.size), "p50_ms": round(float(p50), 2), "p90_ms": round(float(p90), 2),
            "p99_ms": round(float(p99), 2), "mean_ms": round(float(ms.mean()), 2), "max_ms": round(float(ms.max()), 2)}


def listening_pids(port: int) -> set[int]:
    """Find every process that holds the socket listening on `port` (gunicorn's master and its workers)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in list(handle)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
    pids = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd.path) in inodes for fd in os.scandir(f"/proc/{entry.name}/fd")):
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def cpu_seconds(pids: set[int]) -> float:
    """Return the user plus system CPU seconds of `pids`, read from /proc/<pid>/stat."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


class Client:
    """A keep-alive HTTP client. The same code measures ours and the reference."""

    def __init__(self, name: str, url: str):
        self.name = name
        self.url = url
        self.session = requests.Session()
        self.pids = listening_pids(urlsplit(url).port)

    def post(self, path: str, body: bytes, timeout: float = 120.0):
        started = time.perf_counter()
        response = self.session.post(self.url + path, data=body, headers=JSON_HEADERS, timeout=timeout)
        return time.perf_counter() - started, response

    def get(self, path: str, timeout: float = 30.0):
        started = time.perf_counter()
        response = self.session.get(self.url + path, timeout=timeout)
        return time.perf_counter() - started, response


@dataclass
class Backend:
    name: str
    client: Client
    train_seconds: float
    model_dir: Path | None = None
    webhook_seconds: list = field(default_factory=list)


@dataclass(frozen=True)
class Corpus:
    train: list  # [(text, label)]
    heldout: list
    texts: list  # every unique text, for the selection pool


def choice_result(label: str) -> list[dict]:
    return [{"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices", "value": {"choices": [label]}}]


def ls_task(task_id: int, text: str, project_id: int = PROJECT_ID) -> dict:
    """Build a task as Label Studio 1.23 sends it to /predict."""
    return {"id": task_id, "data": {VALUE_KEY: text}, "meta": {}, "created_at": "2026-12-04T20:00:00.000000Z",
            "updated_at": "2026-12-04T20:00:00.000000Z", "is_labeled": False, "overlap": 1, "inner_id": task_id,
            "total_annotations": 0, "cancelled_annotations": 0, "total_predictions": 0, "comment_count": 0,
            "unresolved_comment_count": 0, "last_comment_updated_at": None, "project": project_id,
            "updated_by": None, "file_upload": None, "comment_authors": [], "annotations": [], "predictions": [],
            "drafts": []}


def predict_body(texts: list[str], first_id: int = 100000) -> bytes:
    tasks = [ls_task(first_id + offset, text) for offset, text in enumerate(texts)]
    return json.dumps({"tasks": tasks, "project": PROJECT, "label_config": LABEL_CONFIG,
                       "params": {"login": None, "password": None, "context": None}}).encode()


def annotation_event(task_id: int, text: str, label: str, project_id: int = PROJECT_ID) -> dict:
    """Build an ANNOTATION_CREATED webhook as Label Studio sends it with "Send payload" on."""
    return {"action": "ANNOTATION_CREATED",
            "annotation": {"id": 500000 + task_id, "task": task_id, "project": project_id,
                           "result": choice_result(label), "was_cancelled": False, "ground_truth": False,
                           "lead_time": 3.2, "completed_by": 1},
            "task": {"id": task_id, "data": {VALUE_KEY: text}, "project": project_id, "is_labeled": True},
            "project": {"id": project_id, "title": "benchmark", "label_config": LABEL_CONFIG}}


def predicted_labels(body: dict) -> list:
    labels = []
    for item in body["results"]:
        choices = [r["value"]["choices"][0] for r in item.get("result") or [] if r.get("from_name") == FROM_NAME]
        labels.append(choices[0] if choices else None)
    return labels


@pytest.fixture(scope="session")
def report() -> dict:
    return REPORT


@pytest.fixture(scope="session")
def corpus() -> Corpus:
    data = load_dataset("rotten_tomatoes")
    unique = dict(zip(data.texts, data.labels))
    pairs = list(unique.items())
    order = np.random.default_rng(SEED).permutation(len(pairs))
    train = [pairs[i] for i in order[:N_TRAIN]]
    heldout = [pairs[i] for i in order[N_TRAIN:N_TRAIN + N_HELDOUT]]
    REPORT["load_avg_start"] = [round(x, 2) for x in os.getloadavg()]
    REPORT["corpus"] = {"name": "rotten_tomatoes", "unique_texts": len(pairs), "train": len(train),
                        "heldout": len(heldout), "seed": SEED}
    return Corpus(train, heldout, [text for text, _ in pairs])


def fresh_dir(name: str) -> Path:
    """Create an empty WORKDIR/name, removing the previous run's copy."""
    path = WORKDIR / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def wait_for_student(model_dir: Path, n_examples: int, worker, timeout: float = 900.0):
    """Poll MODEL_DIR until a published student was trained on `n_examples` annotations."""
    store = ProjectStore(model_dir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        bundle = store.load_latest(PROJECT_ID)
        if bundle is not None and bundle.n_examples.get(FROM_NAME) == n_examples:
            return bundle
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with code {worker.poll()}; see {worker.log_path}")
        time.sleep(0.25)
    raise TimeoutError(f"no student trained on {n_examples} examples after {timeout:.0f} s; see {worker.log_path}")


@pytest.fixture(scope="session")
def ours(corpus):
    """`mraru serve` (gunicorn) and one `mraru worker`, trained by N_TRAIN annotation webhooks."""
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    connection = redis.Redis.from_url(redis_url)
    if connection.dbsize():
        pytest.fail(f"Redis database {REDIS_DB} holds {connection.dbsize()} keys; the benchmark flushes its database "
                    "at the end, so choose an empty one with MRARU_BENCH_REDIS_DB", pytrace=False)
    tmp = fresh_dir("ours")
    model_dir = tmp / "model_dir"
    env = {"REDIS_URL": redis_url, "MRARU_QUEUE_NAME": "mraru-bench"}
    server, url = start_server(model_dir, tmp, **env)
    worker = start_worker(model_dir, tmp, **env)
    try:
        client = Client("ours", url)
        setup = json.dumps({"project": PROJECT, "schema": LABEL_CONFIG, "hostname": "http://127.0.0.1:8080"}).encode()
        _, response = client.post("/setup", setup)
        assert response.status_code == 200, response.text

        started, cpu_before = time.perf_counter(), cpu_seconds(client.pids)
        latencies = []
        for task_id, (text, label) in enumerate(corpus.train, start=1):
            elapsed, response = client.post("/webhook", json.dumps(annotation_event(task_id, text, label)).encode())
            assert response.status_code == 202, response.text
            latencies.append(elapsed)
        sent, cpu_after = time.perf_counter(), cpu_seconds(client.pids)
        bundle = wait_for_student(model_dir, len(corpus.train), worker)
        ready = time.perf_counter()
        REPORT["ours_training"] = {
            "webhooks_sent_s": round(sent - started, 2),
            "last_webhook_to_student_s": round(ready - sent, 2),
            "server_cpu_ms_per_webhook": round((cpu_after - cpu_before) * 1000.0 / len(latencies), 2),
            "model_version": bundle.model_version,
            "student": bundle.student,
        }
        yield Backend("ours", client, ready - started, model_dir, latencies)
    finally:
        worker.stop()
        server.stop()
        connection.flushdb()


@pytest.fixture(scope="session")
def reference(corpus):
    """The reference backend at MRARU_BENCH_REFERENCE_URL, trained the way its README describes:
    labelled tasks in a Label Studio project, then an annotation webhook that makes it fetch them
    and fit. Returns None when the URL is not set."""
    if not REFERENCE_URL:
        REPORT["reference"] = "not measured: set MRARU_BENCH_REFERENCE_URL (see docs/benchmarks.md)"
        return None
    from backend.ls.launcher import LabelStudioServer, create_project

    client = Client("reference", REFERENCE_URL)
    _, response = client.get("/health")
    assert response.status_code == 200, f"reference at {REFERENCE_URL} answered /health with {response.status_code}"
    venv = Path(os.environ.get("MRARU_LS_VENV") or REPO / ".venv-ls")
    with LabelStudioServer(venv, fresh_dir("reference-ls"), port=LS_PORT, token=LS_TOKEN) as server:
        tasks = [{"data": {VALUE_KEY: text}, "annotations": [{"result": choice_result(label)}]}
                 for text, label in corpus.train]
        project_id = create_project(server.url, server.token, "reference benchmark", LABEL_CONFIG, tasks)
        task_id, (text, label) = len(tasks), corpus.train[-1]
        event = json.dumps(annotation_event(task_id, text, label, project_id)).encode()
        train_seconds, response = client.post("/webhook", event, timeout=900.0)
    assert response.status_code == 201 and response.json().get("status") == "ok", response.text
    REPORT["reference_training"] = {"webhook_that_trains_s": round(train_seconds, 2), "url": REFERENCE_URL}
    return Backend("reference", client, train_seconds)


@pytest.fixture(scope="session")
def backends(ours, reference) -> list:
    return [ours] + ([reference] if reference is not None else [])


def interleaved(backends: list, bodies: list[bytes], path: str, check) -> tuple[dict, dict]:
    """Post each body to every backend, alternating which goes first.

    Returns the latencies by backend name, and each server's CPU milliseconds per request (its
    processes' CPU time over the loop, divided by the requests; contention does not inflate it).
    """
    seconds = {backend.name: [] for backend in backends}
    cpu_before = {backend.name: cpu_seconds(backend.client.pids) for backend in backends}
    for round_no, body in enumerate(bodies):
        order = backends if round_no % 2 == 0 else backends[::-1]
        for backend in order:
            elapsed, response = backend.client.post(path, body)
            check(backend, response)
            seconds[backend.name].append(elapsed)
    cpu_ms = {backend.name: round((cpu_seconds(backend.client.pids) - cpu_before[backend.name]) * 1000.0
                                  / len(bodies), 2) for backend in backends}
    return seconds, cpu_ms


def pytest_sessionfinish(session, exitstatus):
    if not REPORT:
        return
    REPORT["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "platform": platform.platform(), "load_avg_end": [round(x, 2) for x in os.getloadavg()]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(REPORT, indent=2))


def pytest_terminal_summary(terminalreporter):
    if not REPORT:
        return
    terminalreporter.section("benchmark results")
    for key, value in REPORT.items():
        terminalreporter.write_line(f"{key}: {json.dumps(value)}")
    terminalreporter.write_line(f"written to {OUT}")
