"""Label Studio failing during a round: the round backs off, resumes, and logs the outage once.

`FakeLabelStudio` below imitates Label Studio's REST API (the calls `backend.ls.client`
makes), so faults can be injected per request: an HTTP status, or no listener at all. It runs
on 127.0.0.1 in a thread of the test process; the backend reaches it over real HTTP from its own
`mraru serve` and `mraru worker` processes. The other fault, restart and scale-out tests import
it from here.
"""

import json
import re
import sqlite3
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest
import redis
import requests

from backend.store import ProjectStore
from tests.support.processes import free_port, start_server, start_worker

REDIS_URL = "redis://127.0.0.1:6379/0"
API_KEY = "fake-legacy-token-0123456789"
LABELS = ("Positive", "Negative")
CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
  </Choices>
</View>"""
WORDS = {"Positive": ["wonderful", "great", "moving", "brilliant"], "Negative": ["dull", "awful", "tedious", "boring"]}


def gold_label(task_id: int) -> str:
    return LABELS[task_id % 2]


def task_text(task_id: int) -> str:
    """A text whose gold label the fake teacher reads from its marker."""
    label = gold_label(task_id)
    words = WORDS[label]
    return f"review {task_id}: a {words[task_id % 4]} and {words[(task_id + 1) % 4]} film [gold:{label}]"


class FakeLabelStudio:
    """An in-memory Label Studio REST API with fault injection, on a port of 127.0.0.1.

    `fail(status, paths=...)` makes matching requests return `status`. `go_down()` closes the
    listener (connection refused) and `come_back()` opens it again on the same port.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.tasks: dict[int, dict] = {}
        self.annotations: dict[int, list] = {}
        self.predictions: list[dict] = []
        self.views: dict[int, dict] = {}
        self.model_versions: dict[int, str] = {}
        self.calls: list[tuple[str, str]] = []
        self.fault: tuple[int, str] | None = None
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = None
        self.come_back()

    # -- test side ---------------------------------------------------------------------------

    def add_tasks(self, project_id: int, task_ids) -> None:
        with self.lock:
            for task_id in task_ids:
                self.tasks[task_id] = {"id": task_id, "project": project_id, "data": {"text": task_text(task_id)}}

    def annotate(self, task_id: int, annotation_id: int, label: str | None = None) -> dict:
        """Store an annotation as Label Studio would, and return the webhook body it would send."""
        label = label or gold_label(task_id)
        result = [{"from_name": "sentiment", "to_name": "text", "type": "choices", "value": {"choices": [label]}}]
        with self.lock:
            task = self.tasks[task_id]
            annotation = {"id": annotation_id, "task": task_id, "result": result, "was_cancelled": False}
            self.annotations.setdefault(task_id, []).append(annotation)
        return {"action": "ANNOTATION_CREATED", "annotation": annotation,
                "task": {"id": task_id, "data": dict(task["data"]), "project": task["project"]},
                "project": {"id": task["project"]}}

    def fail(self, status: int | None, paths: str = "/api/") -> None:
        """Return `status` for requests whose path contains `paths`; None clears the fault."""
        with self.lock:
            self.fault = (status, paths) if status else None

    def go_down(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def come_back(self) -> None:
        handler = type("Handler", (_Handler,), {"owner": self})
        self._server = _QuietServer(("127.0.0.1", self.port), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def predictions_of(self, project_id: int) -> list[dict]:
        with self.lock:
            return [item for item in self.predictions if self.tasks[item["task"]]["project"] == project_id]

    def count(self, method: str, pattern: str) -> int:
        with self.lock:
            return sum(1 for m, path in self.calls if m == method and re.search(pattern, path))

    def stop(self) -> None:
        self.go_down()

    # -- server side -------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, body):
        with self.lock:
            self.calls.append((method, path))
            if self.fault and self.fault[1] in path:
                return self.fault[0], {"detail": "injected failure"}
            return self._route(method, path, query, body)

    def _route(self, method, path, query, body):
        project = int(query.get("project", ["0"])[0] or 0)
        if method == "GET" and path == "/api/tasks":
            page, size = int(query["page"][0]), int(query["page_size"][0])
            rows = sorted((t for t in self.tasks.values() if t["project"] == project), key=lambda t: t["id"])
            chunk = [self._task_row(task) for task in rows[(page - 1) * size:page * size]]
            return 200, {"tasks": chunk, "total": len(rows)}
        match = re.fullmatch(r"/api/tasks/(\d+)/?", path)
        if match:
            task = self.tasks[int(match.group(1))]
            if method == "PATCH":
                task["data"] = body["data"]
            return 200, dict(task)
        match = re.fullmatch(r"/api/projects/(\d+)/export", path)
        if match:
            pid = int(match.group(1))
            return 200, [dict(task, annotations=self.annotations[task["id"]]) for task in self.tasks.values()
                         if task["project"] == pid and self.annotations.get(task["id"])]
        match = re.fullmatch(r"/api/projects/(\d+)/import/predictions", path)
        if match:
            self.predictions.extend(body)
            return 201, {"created": len(body)}
        match = re.fullmatch(r"/api/projects/(\d+)/?", path)
        if match and method == "PATCH":
            self.model_versions[int(match.group(1))] = body["model_version"]
            return 200, {"id": int(match.group(1))}
        if path.rstrip("/") == "/api/dm/views":
            if method == "GET":
                return 200, [view for view in self.views.values() if view["project"] == project]
            view = {"id": len(self.views) + 1, "project": body["project"], "data": body["data"]}
            self.views[view["id"]] = view
            return 201, view
        match = re.fullmatch(r"/api/dm/views/(\d+)/?", path)
        if match:
            self.views[int(match.group(1))].update(body)
            return 200, self.views[int(match.group(1))]
        if path.rstrip("/") == "/api/webhooks":
            return 200, []
        return 404, {"detail": f"no route {method} {path}"}

    def _task_row(self, task: dict) -> dict:
        annotations = self.annotations.get(task["id"], [])
        return dict(task, total_annotations=sum(not a["was_cancelled"] for a in annotations),
                    cancelled_annotations=sum(a["was_cancelled"] for a in annotations))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: FakeLabelStudio = None

    def log_message(self, format, *args):
        pass

    def _serve(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"null") if length else None
        if self.headers.get("Authorization") != f"Token {API_KEY}":
            status, payload = 401, {"detail": "Invalid token."}
        else:
            status, payload = self.owner.handle(method, parts.path, parse_qs(parts.query), body)
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def do_PATCH(self):
        self._serve("PATCH")

    def do_PUT(self):
        self._serve("PUT")


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass


# -- helpers the other fault tests share ---------------------------------------------------------


def backend_env(queue_name: str, ls: FakeLabelStudio | None = None, teacher_url: str | None = None,
                redis_url: str = REDIS_URL, **extra) -> dict:
    env = {"REDIS_URL": redis_url, "MRARU_QUEUE_NAME": queue_name, "MRARU_MIN_TRAIN_EXAMPLES": "4",
           "MRARU_SEED_SIZE": "8", "MRARU_BATCH_SIZE": "8", "MRARU_LOCK_TTL": "3",
           "MRARU_RECONCILE_INTERVAL": "1", "MRARU_LS_BACKOFF": "0.5", "MRARU_LS_BACKOFF_MAX": "2"}
    if ls is not None:
        env.update({"LABEL_STUDIO_URL": ls.url, "LABEL_STUDIO_API_KEY": API_KEY})
    if teacher_url is not None:
        env.update({"OPENAI_BASE_URL": teacher_url, "OPENAI_API_KEY": "sk-fake", "MRARU_TEACHER_MODEL": "fake-model",
                    "MRARU_TEACHER_TIMEOUT": "3", "MRARU_TEACHER_MAX_RETRIES": "2"})
    env.update({key: str(value) for key, value in extra.items()})
    return env


def clean_queue(queue_name: str, redis_url: str = REDIS_URL) -> None:
    connection = redis.Redis.from_url(redis_url)
    for key in connection.scan_iter(f"*{queue_name}*"):
        connection.delete(key)


def setup_project(url: str, project_id: int, config: str = CONFIG) -> str:
    response = requests.post(f"{url}/setup", json={"project": f"{project_id}.1733300000", "schema": config},
                             timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["model_version"]


def wait_until(condition, timeout: float, message: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{message} within {timeout:.0f} s")


def rounds_of(model_dir, project_id: int) -> list[dict]:
    return ProjectStore(model_dir).rounds(project_id)


def deferrals(model_dir, kind: str, project_id: int) -> int:
    """How many times the job was deferred since its last successful run."""
    with sqlite3.connect(model_dir / "state.sqlite3", timeout=30) as connection:
        row = connection.execute("SELECT deferrals FROM job_requests WHERE kind = ? AND project_id = ?",
                                 (kind, project_id)).fetchone()
    return row[0] if row else 0


def log_lines(process, pattern: str) -> list[str]:
    return [line for line in process.log_text().splitlines() if re.search(pattern, line)]


# -- tests ---------------------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path):
    """A fake Label Studio with project 41 (tasks 1-30), one `mraru serve` and one `mraru worker`."""
    queue_name = f"mraru-ls-{uuid.uuid4().hex[:8]}"
    ls = FakeLabelStudio()
    ls.add_tasks(41, range(1, 31))
    env = backend_env(queue_name, ls)
    model_dir = tmp_path / "model_dir"
    server, url = start_server(model_dir, tmp_path, **env)
    worker = start_worker(model_dir, tmp_path, **env)
    handle = type("World", (), {"ls": ls, "url": url, "server": server, "worker": worker, "model_dir": model_dir})
    yield handle
    worker.stop()
    server.stop()
    ls.stop()
    clean_queue(queue_name)


@pytest.mark.parametrize("fault", ["unreachable", 500, 503, 401])
def test_round_ls_fault_backs_off_once(world, fault):
    if fault == "unreachable":
        world.ls.go_down()
    else:
        world.ls.fail(fault)

    setup_project(world.url, 41)
    # Let it back off a few times while Label Studio stays broken.
    wait_until(lambda: deferrals(world.model_dir, "round", 41) >= 3, 90, "the round was not deferred three times")
    if fault == "unreachable":
        world.ls.come_back()
    else:
        world.ls.fail(None)
    wait_until(lambda: rounds_of(world.model_dir, 41), 60, "the round did not resume")

    record = rounds_of(world.model_dir, 41)[0]
    warnings = log_lines(world.worker, r"WARNING .*Label Studio")
    assert len(record["task_ids"]) == 8
    assert world.ls.views and world.ls.views[1]["project"] == 41
    assert len(warnings) == 1, warnings
    assert "project=41" in warnings[0]
    assert not log_lines(world.worker, r"task=\d+.*(Label Studio|HTTP 5|HTTP 401)")
    assert log_lines(world.worker, r"project=41 round resumed after ([3-9]|\d\d+) deferrals")


def test_retrain_ls_down_uses_webhooks(world):
    setup_project(world.url, 41)
    wait_until(lambda: rounds_of(world.model_dir, 41), 60, "the first round did not run")
    world.ls.fail(503)

    for offset in range(8):
        body = world.ls.annotate(offset + 1, 500 + offset)
        assert requests.post(f"{world.url}/webhook", json=body, timeout=5).status_code == 202
    wait_until(lambda: ProjectStore(world.model_dir).latest_version(41) >= 1, 60, "no version was published")

    bundle = ProjectStore(world.model_dir).load_latest(41)
    assert bundle.n_examples["sentiment"] == 8
    world.ls.fail(None)
    wait_until(lambda: len(rounds_of(world.model_dir, 41)) == 2, 60, "the round after the retrain did not resume")
