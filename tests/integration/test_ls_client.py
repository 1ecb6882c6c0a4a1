"""LabelStudioClient and the launcher against a real Label Studio 1.23.2 (see docs/label-studio.md)."""

import json
import os
import socket
import subprocess
import sys

import pytest
import requests

from backend.ls.client import LabelStudioClient, LabelStudioError
from backend.ls.launcher import LabelStudioServer, connect_backend, ensure_label_studio, free_port
from tests.e2e.ls_fixtures import (
    FIXTURES,
    REPO,
    TEXT_CONFIG,
    BackendRecorder,
    create_text_project,
    first_choice_result,
    label_studio,  # noqa: F401  (pytest fixture)
    labelling_stream_body,
    ls_venv,
    next_task_ids,
    record_backend_events,
)

pytestmark = pytest.mark.e2e

RANK_KEY = "mraru_rank"


def _post(server, path, body, **params):
    response = requests.post(f"{server.url}/{path}", json=body, params=params, timeout=60,
                             headers={"Authorization": f"Token {server.token}"})
    response.raise_for_status()
    return response.json()


def _ranked_project(server, title):
    """30 tasks; ranks 1, 2, 3, 10, 11 on tasks out of id order. Returns (project, view, ranked ids)."""
    client = server.client()
    project_id = create_text_project(server, [f"review number {i}" for i in range(30)], title=title)
    ids = [task["id"] for task in client.iter_tasks(project_id, fields=("id",))]
    ranks = {ids[20]: 1, ids[3]: 2, ids[7]: 3, ids[11]: 10, ids[25]: 11}
    client.set_task_fields(project_id, {task_id: {RANK_KEY: rank} for task_id, rank in ranks.items()})
    view_id = client.ensure_queue_view(project_id, RANK_KEY)
    return project_id, view_id, sorted(ranks, key=ranks.get), ids


def _stream(server, project_id, view_id, body, n):
    """Serve `n` tasks through the next_task action with `body`, annotating each one."""
    served = []
    for _ in range(n):
        task = _post(server, "api/dm/actions", body, id="next_task", project=project_id, tabID=view_id)
        served.append(task["id"])
        _post(server, f"api/tasks/{task['id']}/annotations/", {"result": first_choice_result(TEXT_CONFIG)})
    return served


# -- launcher -------------------------------------------------------------------------------

def test_ensure_label_studio_existing_venv():
    messages = []
    executable = ensure_label_studio(ls_venv(), progress=messages.append)
    assert executable == ls_venv() / "bin" / "label-studio"
    assert messages == []


def test_server_busy_port_rejected(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(RuntimeError, match=f"port {port} on 127.0.0.1 is busy"):
            LabelStudioServer(ls_venv(), tmp_path, port=port).start()


def test_server_moved_port_detected(tmp_path):
    server = LabelStudioServer(ls_venv(), tmp_path, port=18123)
    server.log_path.write_text("old start\nStarting development server at http://127.0.0.1:18124/\n")
    with pytest.raises(RuntimeError, match="bound port 18124 instead of 18123"):
        server._check_bound_port()
    server._log_offset = server.log_path.stat().st_size  # a later start only reads its own lines
    server.log_path.write_text(server.log_path.read_text() + "Starting development server at http://127.0.0.1:18123/\n")
    server._check_bound_port()


def test_server_missing_venv_names_setup(tmp_path):
    with pytest.raises(FileNotFoundError, match="run `make test`"):
        LabelStudioServer(tmp_path / "no-venv", tmp_path / "data").start()


def test_label_studio_fixture_missing_venv_fails(tmp_path):
    test_file = tmp_path / "test_needs_ls.py"
    test_file.write_text("from tests.e2e.ls_fixtures import label_studio\n\n\n"
                         "def test_uses_it(label_studio):\n    pass\n")
    env = {**os.environ, "MRARU_LS_VENV": str(tmp_path / "missing-venv")}
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(test_file)],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout
    assert "run `make test`" in run.stdout
    assert "1 error" in run.stdout
    assert "skipped" not in run.stdout


def test_server_restart_reuses_data_dir(tmp_path):
    with LabelStudioServer(ls_venv(), tmp_path) as first:
        project_id = create_text_project(first, ["kept"], title="kept project")
        token, pid = first.token, first.process.pid
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # the whole process group is gone
    with LabelStudioServer(ls_venv(), tmp_path, token=token) as second:
        assert second.client().get_project(project_id)["title"] == "kept project"
    with pytest.raises(RuntimeError, match="rejected the token"):
        LabelStudioServer(ls_venv(), tmp_path, token="e" * 40).start()


def test_server_serves_admin_on_loopback(label_studio):
    me = requests.get(f"{label_studio.url}/api/current-user/whoami", timeout=10,
                      headers={"Authorization": f"Token {label_studio.token}"}).json()
    assert label_studio.url.startswith("http://127.0.0.1:")
    assert me["email"] == label_studio.username
    assert (label_studio.data_dir / "label-studio.log").exists()


# -- authentication and errors ------------------------------------------------------------------

def test_client_legacy_token_gets_project(label_studio):
    project_id = create_text_project(label_studio, ["one"], title="legacy token")
    assert label_studio.client().get_project(project_id)["title"] == "legacy token"


def test_client_personal_token_gets_project(label_studio):
    project_id = create_text_project(label_studio, ["one"], title="personal token")
    pat = _post(label_studio, "api/token/", {})["token"]
    client = LabelStudioClient(label_studio.url, pat)
    assert client.get_project(project_id)["title"] == "personal token"


def test_client_wrong_token_raises_401(label_studio):
    project_id = create_text_project(label_studio, ["one"], title="wrong token")
    bad = "f" * 40
    client = LabelStudioClient(label_studio.url, bad, max_retries=0)
    with pytest.raises(LabelStudioError, match=f"project {project_id}: get project: GET {label_studio.url}") as info:
        client.get_project(project_id)
    assert info.value.status == 401
    assert bad not in str(info.value)


def test_client_unreachable_url_raises_transport_error():
    url = f"http://127.0.0.1:{free_port()}"
    client = LabelStudioClient(url, "0" * 40, timeout=2.0, max_retries=0)
    with pytest.raises(LabelStudioError, match=f"project 7: get project: GET {url}/api/projects/7/ failed") as info:
        client.get_project(7)
    assert info.value.status is None


def test_client_missing_project_raises_404(label_studio):
    with pytest.raises(LabelStudioError, match="project 987654: get project") as info:
        label_studio.client().get_project(987654)
    assert info.value.status == 404


# -- reading ----------------------------------------------------------------------------------

def test_iter_tasks_pages_through_every_task(label_studio):
    client = label_studio.client()
    project_id = create_text_project(label_studio, [f"text {i}" for i in range(23)], title="iter tasks")
    tasks = list(client.iter_tasks(project_id, page_size=5))
    assert len(tasks) == 23
    assert [t["id"] for t in tasks] == sorted(t["id"] for t in tasks)
    assert set(tasks[0]) == {"id", "data", "total_annotations", "cancelled_annotations"}
    assert tasks[4]["data"] == {"text": "text 4"}


def test_list_annotations_includes_skips(label_studio):
    client = label_studio.client()
    project_id = create_text_project(label_studio, ["good", "bad", "untouched"], title="list annotations")
    ids = [t["id"] for t in client.iter_tasks(project_id, fields=("id",))]
    done = _post(label_studio, f"api/tasks/{ids[0]}/annotations/", {"result": first_choice_result(TEXT_CONFIG)})
    skip = _post(label_studio, f"api/tasks/{ids[1]}/annotations/", {"result": [], "was_cancelled": True})
    records = sorted(client.list_annotations(project_id), key=lambda r: r["task_id"])
    assert [(r["task_id"], r["annotation_id"], r["was_cancelled"]) for r in records] == [
        (ids[0], done["id"], False), (ids[1], skip["id"], True)]
    assert records[0]["result"] == first_choice_result(TEXT_CONFIG)
    assert records[0]["data"] == {"text": "good"}
    assert records[1]["result"] == []
    assert records[0]["updated_at"]


def test_set_model_version_unknown_raises(label_studio):
    project_id = create_text_project(label_studio, ["one"], title="unknown version")
    with pytest.raises(LabelStudioError, match="set model version 'nope'.*HTTP 400") as info:
        label_studio.client().set_model_version(project_id, "nope")
    assert info.value.status == 400


# -- writing ----------------------------------------------------------------------------------

def test_import_predictions_score_optional(label_studio):
    client = label_studio.client()
    project_id = create_text_project(label_studio, ["a", "b", "c"], title="prediction scores")
    ids = [t["id"] for t in client.iter_tasks(project_id, fields=("id",))]
    result = first_choice_result(TEXT_CONFIG)
    created = client.import_predictions(project_id, [
        {"task": ids[0], "result": result, "model_version": "v1"},
        {"task": ids[1], "result": result, "score": None, "model_version": "v1"},
        {"task": ids[2], "result": result, "score": 0.25, "model_version": "v1"},
    ])
    assert created == 3
    stored = client.request("GET", "api/predictions/", params={"project": project_id}, operation="list predictions")
    assert sorted((p["task"], p["score"]) for p in stored) == [(ids[0], None), (ids[1], None), (ids[2], 0.25)]


def test_import_predictions_foreign_task_rejects_batch(label_studio):
    client = label_studio.client()
    project_id = create_text_project(label_studio, ["a"], title="foreign prediction")
    with pytest.raises(LabelStudioError, match="import 1 predictions.*HTTP 400") as info:
        client.import_predictions(project_id, [{"task": 99999999, "result": [], "model_version": "v1"}])
    assert info.value.status == 400


def test_import_predictions_current_version_prelabels(label_studio):
    client = label_studio.client()
    project_id = create_text_project(label_studio, ["a"], title="current prediction")
    task_id = next(client.iter_tasks(project_id, fields=("id",)))["id"]
    negative = [dict(first_choice_result(TEXT_CONFIG)[0], value={"choices": ["Negative"]})]
    client.import_predictions(project_id, [
        {"task": task_id, "result": first_choice_result(TEXT_CONFIG), "score": 0.9, "model_version": "old"},
        {"task": task_id, "result": negative, "score": 0.6, "model_version": "new"},
    ])
    client.set_model_version(project_id, "new")
    assert client.get_project(project_id)["model_version"] == "new"
    # The labelling stream pre-labels with the first prediction in the next_task response. A task
    # opened from the Data Manager gets every prediction, and the frontend picks the project's version.
    served = _post(label_studio, "api/dm/actions", {}, id="next_task", project=project_id)
    assert [(p["model_version"], p["result"]) for p in served["predictions"]] == [("new", negative)]
    opened = client.request("GET", f"api/tasks/{task_id}", params={"project": project_id}, operation="open task")
    assert sorted(p["model_version"] for p in opened["predictions"]) == ["new", "old"]


def test_set_task_fields_keeps_other_keys_exact(label_studio):
    client = label_studio.client()
    data = {"text": "Ünïcode — \"quoted\"\n", "meta": {"b": [1, 2.5, None], "a": True}, "n": 1.0, "z": ""}
    project_id = create_text_project(label_studio, ["x"], title="merge fields")
    task_id = next(client.iter_tasks(project_id, fields=("id",)))["id"]
    client.request("PATCH", f"api/tasks/{task_id}", json={"data": data}, operation="seed data")
    client.set_task_fields(project_id, {task_id: {RANK_KEY: 3}})
    client.set_task_fields(project_id, {task_id: {RANK_KEY: 1, "other": "x"}})
    stored = next(client.iter_tasks(project_id, fields=("data",)))["data"]
    assert stored == {**data, RANK_KEY: 1, "other": "x"}
    assert json.dumps(stored, sort_keys=True) == json.dumps({**data, RANK_KEY: 1, "other": "x"}, sort_keys=True)


def test_set_task_fields_foreign_task_rejected(label_studio):
    client = label_studio.client()
    first = create_text_project(label_studio, ["x"], title="owner project")
    second = create_text_project(label_studio, ["y"], title="other project")
    task_id = next(client.iter_tasks(first, fields=("id",)))["id"]
    with pytest.raises(LabelStudioError, match=f"task {task_id} belongs to project {first}, not {second}"):
        client.set_task_fields(second, {task_id: {RANK_KEY: 1}})


def test_ensure_queue_view_reuses_view(label_studio):
    client = label_studio.client()
    project_id = create_text_project(label_studio, ["x"], title="queue view twice")
    first = client.ensure_queue_view(project_id, RANK_KEY)
    second = client.ensure_queue_view(project_id, RANK_KEY)
    views = client.request("GET", "api/dm/views/", params={"project": project_id}, operation="list views")
    assert first == second
    assert [v["id"] for v in views if v["data"].get("title") == "M-RARU queue"] == [first]
    data = views[[v["id"] for v in views].index(first)]["data"]
    assert data["ordering"] == [f"tasks:data.{RANK_KEY}"]
    assert data["columnsDisplayType"] == {f"tasks:data.{RANK_KEY}": "Number"}


# -- the annotators' queue ------------------------------------------------------------------------

def test_next_task_ids_follow_rank_order(label_studio):
    project_id, view_id, ranked, ids = _ranked_project(label_studio, "queue as displayed")
    served = next_task_ids(label_studio.url, label_studio.token, project_id, view_id, 8)
    unranked = [i for i in ids if i not in ranked]
    # Ranks 10 and 11 come after 3, so the order is numeric, not text.
    assert served[:5] == ranked
    # Tasks without a rank come after the ranked ones, in id order.
    assert served[5:] == unranked[:3]


def test_next_task_empty_body_ignores_tab(label_studio):
    project_id, view_id, ranked, ids = _ranked_project(label_studio, "queue label all")
    # "Label All Tasks" with nothing selected sends {}. The server does not read tabID, so the
    # project's sampling (sequential by default) decides.
    assert _stream(label_studio, project_id, view_id, {}, 3) == ids[:3]


def test_next_task_select_all_follows_tab(label_studio):
    project_id, view_id, ranked, ids = _ranked_project(label_studio, "queue select all")
    body = labelling_stream_body(label_studio.url, label_studio.token, view_id)
    body["selectedItems"] = {"all": True, "excluded": []}
    assert _stream(label_studio, project_id, view_id, body, 5) == ranked


def test_next_endpoint_with_view_follows_rank(label_studio):
    project_id, view_id, ranked, ids = _ranked_project(label_studio, "queue next view")
    served = []
    for _ in range(5):
        task = requests.get(f"{label_studio.url}/api/projects/{project_id}/next/", params={"view": view_id},
                            headers={"Authorization": f"Token {label_studio.token}"}, timeout=60).json()
        served.append(task["id"])
        _post(label_studio, f"api/tasks/{task['id']}/annotations/", {"result": first_choice_result(TEXT_CONFIG)})
    assert served == ranked


def test_uncertainty_sampling_follows_score(label_studio):
    client = label_studio.client()
    project_id, view_id, ranked, ids = _ranked_project(label_studio, "queue uncertainty")
    client.import_predictions(project_id, [
        {"task": task_id, "result": first_choice_result(TEXT_CONFIG), "score": rank / 100, "model_version": "r1"}
        for rank, task_id in enumerate(ranked, start=1)])
    client.set_model_version(project_id, "r1")
    client.request("PATCH", f"api/projects/{project_id}/", json={"sampling": "Uncertainty sampling"}, operation="sampling")
    assert _stream(label_studio, project_id, view_id, {}, 5) == ranked


# -- webhooks ---------------------------------------------------------------------------------------

def test_secure_webhooks_adds_header(label_studio):
    client = label_studio.client()
    with BackendRecorder() as recorder:
        project_id = create_text_project(label_studio, ["a", "b"], title="secure webhooks")
        ids = [t["id"] for t in client.iter_tasks(project_id, fields=("id",))]
        connect_backend(label_studio.url, label_studio.token, project_id, recorder.url, "recorder")
        _post(label_studio, f"api/tasks/{ids[0]}/annotations/", {"result": first_choice_result(TEXT_CONFIG)})
        recorder.wait_for("ANNOTATION_CREATED")
        assert client.secure_webhooks(project_id, recorder.url, {"Authorization": "Basic dTpw"})
        _post(label_studio, f"api/tasks/{ids[1]}/annotations/", {"result": first_choice_result(TEXT_CONFIG)})
        recorder.wait_for("ANNOTATION_CREATED", 2)
    hooks = [r for r in recorder.requests
             if r["path"] == "/webhook" and r["body"]["action"] == "ANNOTATION_CREATED"]
    assert "Authorization" not in hooks[0]["headers"]
    assert hooks[1]["headers"]["Authorization"] == "Basic dTpw"


def test_backend_events_match_saved_fixtures(label_studio):
    with BackendRecorder() as recorder:
        events = record_backend_events(label_studio, recorder)
    for name, body in events.items():
        saved = json.loads((FIXTURES / f"{name}.json").read_text())
        assert set(body) == set(saved), name
        for part in ("annotation", "task"):
            if part in saved:
                assert set(body[part]) == set(saved[part]), f"{name}.{part}"
    assert events["annotation_skipped"]["annotation"]["was_cancelled"] is True
    assert events["annotation_skipped"]["annotation"]["result"] == []
    assert events["annotations_deleted"]["annotations"] == [{"id": events["annotation_created"]["annotation"]["id"]}]
    assert "annotation" not in events["start_training"]
