"""The HTTP protocol Label Studio 1.23 speaks to ML backends."""

import logging

from flask import Blueprint, current_app, jsonify, request

from model import ANNOTATION_EVENTS, DELETE_EVENT, SUPPORTED_EVENTS, MraruModel
from ..labels import UnsupportedConfigError
from .errors import ApiError

logger = logging.getLogger(__name__)

api = Blueprint("api", __name__)

MAX_ID = 2**63 - 1  # ids are stored as SQLite INTEGER
DEFAULT_MAX_REQUEST_MB = 64
SEND_PAYLOAD_HINT = ('enable "Send payload" on the project webhook in Label Studio '
                     "(Settings > Webhooks), so each event carries its data")


@api.record_once
def _limit_request_size(state) -> None:
    """Reject request bodies over the size limit with 413 before they are read."""
    settings = state.app.extensions["mraru"].settings
    megabytes = getattr(settings, "max_request_mb", DEFAULT_MAX_REQUEST_MB)
    state.app.config["MAX_CONTENT_LENGTH"] = int(megabytes * 1024 * 1024)


def _services():
    return current_app.extensions["mraru"]


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def _json_body(hint: str) -> dict:
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        raise ApiError(400, f"request body nests too deeply to parse; {hint}") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"request body must be a JSON object; {hint}")
    return body


def parse_project_id(value, field: str = "project") -> int:
    """Return the numeric id from `12`, `"12"` or Label Studio's `"12.1700000000"` form."""
    if isinstance(value, dict):
        value = value.get("id")
    if _is_id(value):
        return value
    if isinstance(value, str):
        head = value.split(".", 1)[0].strip()
        if head.isascii() and head.isdigit() and _is_id(int(head)):
            return int(head)
    raise ApiError(400, f"{field}={value!r} is not a project id; send the Label Studio project id "
                        "as a number or as '<id>.<timestamp>'", field)


@api.get("/health")
@api.get("/")
def health():
    return jsonify({"status": "UP", "model_class": MraruModel.__name__})


@api.post("/setup")
def setup():
    body = _json_body('send {"project": "<id>.<timestamp>", "schema": "<label config XML>"}')
    project_id = parse_project_id(body.get("project"))
    schema = body.get("schema")
    if not isinstance(schema, str) or not schema.strip():
        raise ApiError(400, "schema is missing or empty; send the project's label config XML as 'schema'", "schema")
    model = MraruModel(project_id, schema, _services(), extra_params=body.get("extra_params"))
    try:
        version = model.setup(hostname=body.get("hostname"), backend_url=request.url_root.rstrip("/"))
    except UnsupportedConfigError as exc:
        raise ApiError(422, f"project {project_id}: {exc}", "schema") from None
    return jsonify({"model_version": version})


@api.post("/predict")
def predict():
    body = _json_body('send {"tasks": [...], "project": "<id>", "label_config": "<XML>"}')
    tasks = body.get("tasks")
    if not isinstance(tasks, list):
        raise ApiError(400, f"tasks must be a list of task objects; got {type(tasks).__name__}", "tasks")
    project = body.get("project")
    project_id = parse_project_id(project) if project is not None else None
    label_config = body.get("label_config")
    if not isinstance(label_config, str) or not label_config.strip():
        label_config = None
    if project_id is None and label_config is None:
        raise ApiError(400, "send 'project' (the Label Studio project id) or 'label_config' with the tasks", "project")
    model = MraruModel(project_id, label_config, _services())
    params = body.get("params") if isinstance(body.get("params"), dict) else {}
    results = model.predict(tasks, context=params.get("context"))
    return jsonify({"results": results, "model_version": model.model_version})


@api.post("/webhook")
def webhook():
    body = _json_body(SEND_PAYLOAD_HINT)
    action = body.get("action")
    if not isinstance(action, str):
        raise ApiError(400, f"webhook has no 'action'; {SEND_PAYLOAD_HINT}", "action")
    if action not in SUPPORTED_EVENTS:
        return jsonify({"status": "ignored", "action": action})
    if "project" not in body:
        raise ApiError(400, f"{action} webhook has no 'project'; {SEND_PAYLOAD_HINT}", "project")
    project_id = parse_project_id(body["project"])
    _check_event_body(action, body)
    services = _services()
    project = body["project"]
    if isinstance(project, dict) and isinstance(project.get("label_config"), str):
        try:
            MraruModel(project_id, project["label_config"], services).label_spec
            services.store.register_project(project_id, project["label_config"], None)
        except UnsupportedConfigError:
            pass  # the stored config, if any, stays in use; /setup reports the problem
    model = MraruModel(project_id, None, services)
    queued = model.fit(action, body)
    return jsonify({"status": "queued", "action": action, **queued}), 202


def _check_event_body(action: str, body: dict) -> None:
    if action in ANNOTATION_EVENTS:
        annotation, task = body.get("annotation"), body.get("task")
        if not isinstance(annotation, dict) or not _is_id(annotation.get("id")):
            raise ApiError(400, f"{action} webhook has no annotation with an integer 'id'; {SEND_PAYLOAD_HINT}",
                           "annotation")
        if not isinstance(task, dict) or not _is_id(task.get("id")):
            raise ApiError(400, f"{action} webhook has no task with an integer 'id'; {SEND_PAYLOAD_HINT}", "task")
    elif action == DELETE_EVENT:
        annotations = body.get("annotations")
        if not isinstance(annotations, list) or not all(
            isinstance(item, dict) and _is_id(item.get("id")) for item in annotations
        ):
            raise ApiError(400, f"{action} webhook needs 'annotations': [{{\"id\": <int>}}, ...]; "
                                f"{SEND_PAYLOAD_HINT}", "annotations")


@api.get("/versions")
def versions():
    services = _services()
    project = request.args.get("project")
    if project is not None:
        return jsonify({"versions": services.store.versions(parse_project_id(project))})
    names = {"mraru-v0"}
    for project_id in services.store.project_ids():
        names.update(services.store.versions(project_id))
    return jsonify({"versions": sorted(names, key=lambda name: int(name.rsplit("v", 1)[1]))})
