"""Pytest fixtures and helpers that run a real Label Studio 1.23.2 for end-to-end tests.

Import what a test module needs, e.g. ``from tests.e2e.ls_fixtures import label_studio``.
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from backend.labels import parse_label_config
from backend.ls.launcher import LabelStudioServer, connect_backend, create_project

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TEXT_CONFIG = """<View>
  <Text name="text" value="$text"/>
  <Choices name="sentiment" toName="text" choice="single">
    <Choice value="Positive"/>
    <Choice value="Negative"/>
  </Choices>
</View>"""


def ls_venv() -> Path:
    """Return the Label Studio virtual environment: $MRARU_LS_VENV, default <repo>/.venv-ls."""
    return Path(os.environ.get("MRARU_LS_VENV") or REPO / ".venv-ls")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory):
    """One Label Studio for the whole session, on a free port of 127.0.0.1, with a fresh data dir."""
    venv = ls_venv()
    if not (venv / "bin" / "label-studio").exists():
        pytest.fail(f"Label Studio is not installed in {venv}; run `make test` (it creates .venv-ls with "
                    "label-studio==1.23.2) or set MRARU_LS_VENV to a venv that has it", pytrace=False)
    server = LabelStudioServer(venv, tmp_path_factory.mktemp("label-studio"))
    with server:
        yield server


def create_text_project(server, texts, label_config=TEXT_CONFIG, title="M-RARU e2e", key="text") -> int:
    """Create a project on `server` with one task per text, stored under data `key`, and return its id."""
    return create_project(server.url, server.token, title, label_config, [{key: text} for text in texts])


def first_choice_result(label_config: str) -> list[dict]:
    """Build an annotation result that picks the first choice of the config's first Choices block."""
    block = parse_label_config(label_config).blocks[0]
    return [{"from_name": block.from_name, "to_name": block.to_name, "type": "choices",
             "value": {"choices": [block.choices[0]]}}]


def labelling_stream_body(url: str, token: str, view_id: int) -> dict:
    """Return the body the Data Manager sends for "Label Tasks As Displayed" on tab `view_id`."""
    response = requests.get(f"{url}/api/dm/views/{view_id}/", headers={"Authorization": f"Token {token}"},
                            timeout=30)
    response.raise_for_status()
    view = response.json()["data"]
    filters = view.get("filters") or {}
    return {"ordering": view.get("ordering", []),
            "filters": {"conjunction": filters.get("conjunction", "and"), "items": filters.get("items", [])}}


def next_task_ids(url: str, token: str, project_id: int, view_id: int, n: int, result=None) -> list[int]:
    """Ask the labelling stream of tab `view_id` for up to `n` tasks, annotating each before the next.

    Sends ``POST /api/dm/actions?id=next_task&project=P&tabID=V`` with the tab's ordering and
    filters, as "Label Tasks As Displayed" does. `result` defaults to the first choice of the
    project's config. Stops early when Label Studio has no task left (404).
    """
    headers = {"Authorization": f"Token {token}"}
    if result is None:
        project = requests.get(f"{url}/api/projects/{project_id}/", headers=headers, timeout=30)
        project.raise_for_status()
        result = first_choice_result(project.json()["label_config"])
    body = labelling_stream_body(url, token, view_id)

    served = []
    for _ in range(n):
        response = requests.post(f"{url}/api/dm/actions", headers=headers, json=body, timeout=60,
                                 params={"id": "next_task", "project": project_id, "tabID": view_id})
        if response.status_code == 404:
            break
        response.raise_for_status()
        task_id = response.json()["id"]
        served.append(task_id)
        created = requests.post(f"{url}/api/tasks/{task_id}/annotations/", headers=headers, timeout=60,
                                json={"result": result, "was_cancelled": False})
        created.raise_for_status()
    return served


class BackendRecorder:
    """A minimal ML backend on 127.0.0.1 that records every request Label Studio sends it.

    Responds to ``GET /health`` with ``{"status": "UP"}``, to ``POST /setup`` with
    ``{"model_version": model_version}``, to ``POST /predict`` with no results and to anything
    else with ``{}``. `requests` contains ``{"method", "path", "headers", "body"}`` dicts in
    arrival order.
    """

    def __init__(self, model_version: str = "recorder-v1"):
        self.model_version = model_version
        self.requests: list[dict] = []
        self._lock = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _respond(self, body):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    parsed = json.loads(raw) if raw else None
                except ValueError:
                    parsed = raw.decode("utf-8", "replace")
                with recorder._lock:
                    recorder.requests.append({"method": self.command, "path": self.path,
                                              "headers": dict(self.headers), "body": parsed})
                    recorder._lock.notify_all()
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._respond({"status": "UP", "model_class": "BackendRecorder"} if self.path == "/health" else {})

            def do_POST(self):
                responses = {"/setup": {"model_version": recorder.model_version}, "/predict": {"results": []}}
                self._respond(responses.get(self.path, {}))

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def webhooks(self, action: str | None = None) -> list[dict]:
        """Return the bodies posted to /webhook, optionally only those with the given `action`."""
        with self._lock:
            return [r["body"] for r in self.requests if r["path"] == "/webhook"
                    and (action is None or (r["body"] or {}).get("action") == action)]

    def wait_for(self, action: str, count: int = 1, timeout: float = 10.0) -> list[dict]:
        """Wait until `count` webhooks with `action` have arrived, then return all of them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.webhooks(action)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    got = [(r["body"] or {}).get("action") for r in self.requests if r["path"] == "/webhook"]
                    raise TimeoutError(f"{count} {action} webhook(s) not received in {timeout} s; got {got}")
                self._lock.wait(left)
            return self.webhooks(action)

    def __enter__(self) -> "BackendRecorder":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._server.shutdown()
        self._server.server_close()


def record_backend_events(server, recorder: "BackendRecorder") -> dict[str, dict]:
    """Drive one project through every event the backend handles, and return one body per event.

    Connects `recorder` as the ML backend (with Basic auth), then creates, updates and deletes
    an annotation, skips a task, requests predictions, patches the project and presses
    "Start Training". Keys: ``setup``, ``predict``, ``annotation_created``, ``annotation_updated``,
    ``annotations_deleted``, ``annotation_skipped``, ``project_updated``, ``start_training``.
    """
    client = server.client()
    project_id = create_text_project(server, ["a fine film", "a dull film", "a long film"], title="webhook events")
    task_ids = [task["id"] for task in client.iter_tasks(project_id, fields=("id",))]
    backend_id = connect_backend(server.url, server.token, project_id, recorder.url, "recorder",
                                 basic_auth=("recorder", "recorder-pass"))
    result = first_choice_result(TEXT_CONFIG)
    annotation = client.request("POST", f"api/tasks/{task_ids[0]}/annotations/", json={"result": result},
                                retry=False, operation="create annotation")
    recorder.wait_for("ANNOTATION_CREATED")
    changed = [dict(result[0], value={"choices": ["Negative"]})]
    client.request("PATCH", f"api/annotations/{annotation['id']}/", json={"result": changed}, operation="update")
    client.request("DELETE", f"api/annotations/{annotation['id']}/", operation="delete annotation")
    client.request("POST", f"api/tasks/{task_ids[1]}/annotations/", json={"result": [], "was_cancelled": True},
                   retry=False, operation="skip task")
    client.request("POST", "api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project_id},
                   json={"selectedItems": {"all": False, "included": [task_ids[2]]}}, retry=False,
                   operation="retrieve predictions")
    client.request("PATCH", f"api/projects/{project_id}/", json={"description": "events"}, operation="patch project")
    client.request("POST", f"api/ml/{backend_id}/train", json={}, retry=False, operation="start training")
    recorder.wait_for("START_TRAINING")

    def first(path, predicate=lambda body: True):
        return next(r["body"] for r in recorder.requests if r["path"] == path and predicate(r["body"]))

    return {
        "setup": first("/setup"),
        "predict": first("/predict"),
        "annotation_created": recorder.wait_for("ANNOTATION_CREATED", 2)[0],
        "annotation_updated": recorder.wait_for("ANNOTATION_UPDATED")[0],
        "annotations_deleted": recorder.wait_for("ANNOTATIONS_DELETED")[0],
        "annotation_skipped": recorder.wait_for("ANNOTATION_CREATED", 2)[1],
        "project_updated": recorder.wait_for("PROJECT_UPDATED")[0],
        "start_training": recorder.wait_for("START_TRAINING")[0],
    }


def _redact(body):
    """Replace the tokens in a recorded body by fixed placeholders."""
    if isinstance(body, dict):
        return {key: ("0" * 40 if key in ("access_token", "token") and isinstance(value, str) else _redact(value))
                for key, value in body.items()}
    if isinstance(body, list):
        return [_redact(item) for item in body]
    return body


def write_backend_event_fixtures(venv: Path, out_dir: Path = FIXTURES) -> list[Path]:
    """Start a throwaway Label Studio, record one body per event, write them as JSON under `out_dir`."""
    import tempfile

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as data_dir, LabelStudioServer(venv, data_dir) as server, \
            BackendRecorder() as recorder:
        for name, body in record_backend_events(server, recorder).items():
            path = out_dir / f"{name}.json"
            path.write_text(json.dumps(_redact(body), indent=2, sort_keys=True) + "\n")
            written.append(path)
    return written


if __name__ == "__main__":
    # python -m tests.e2e.ls_fixtures: refresh tests/e2e/fixtures/*.json from a real Label Studio.
    for written_path in write_backend_event_fixtures(ls_venv()):
        print(written_path)
