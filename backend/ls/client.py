"""REST client for the Label Studio 1.23 calls the backend's jobs make.

Authentication goes through `label_studio_sdk.client.LabelStudio`. It sends a legacy API key as
`Authorization: Token ...`, and exchanges a personal access token (a JWT refresh token) at
`/api/token/refresh/` for an access token sent as `Authorization: Bearer ...`. Requests run on the
SDK's HTTP client, which retries connection errors, 408, 409, 429 and 5xx with backoff. Writes
that are not idempotent are sent once, without retries.
"""

import logging
from collections.abc import Iterator, Mapping

import httpx
from label_studio_sdk.client import LabelStudio
from label_studio_sdk.core.api_error import ApiError

logger = logging.getLogger(__name__)

TASK_FIELDS = ("id", "data", "total_annotations", "cancelled_annotations")
QUEUE_TITLE = "M-RARU queue"
PAGE_SIZE = 1000
LONG_TIMEOUT = 300.0


class LabelStudioError(RuntimeError):
    """A Label Studio call failed; `status` is the HTTP status, or None for transport errors."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class LabelStudioClient:
    """Calls Label Studio's REST API on behalf of the backend.

    Parameters
    ----------
    url : str
        Base URL of Label Studio, e.g. ``http://127.0.0.1:8080``.
    api_key : str
        A legacy API token or a personal access token.
    timeout : float
        Seconds allowed for one ordinary request. Exports and bulk writes get `LONG_TIMEOUT`.
    max_retries : int
        Retries for idempotent requests on connection errors, 408, 409, 429 and 5xx.
    """

    def __init__(self, url: str, api_key: str, timeout: float = 10.0, max_retries: int = 2):
        if not url or not url.startswith(("http://", "https://")):
            raise ValueError(f"Label Studio URL must start with http:// or https://; got {url!r}")
        if not api_key:
            raise ValueError("Label Studio API key is empty; set LABEL_STUDIO_API_KEY")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        try:
            self._sdk = LabelStudio(base_url=self.url, api_key=api_key, timeout=timeout, max_retries=max_retries)
        except ApiError as exc:
            raise LabelStudioError(
                f"Label Studio at {self.url} rejected the API key ({_detail(exc.body)}); create a new token",
                exc.status_code,
            ) from None
        # NOTE: raw JSON goes through the SDK's own HTTP client, so its Token/Bearer handling and
        # retries apply while the typed models (slow on 13,000 tasks) are skipped.
        self._http = self._sdk._client_wrapper.httpx_client

    # -- transport -------------------------------------------------------------------------

    def request(self, method: str, path: str, *, operation: str, params=None, json=None,
                retry: bool = True, timeout: float | None = None):
        """Send one request and return its decoded JSON body (None when empty).

        `operation` names the operation and project for error messages. Raises `LabelStudioError`.
        """
        options = {"max_retries": self.max_retries if retry else 0,
                   "timeout_in_seconds": timeout or self.timeout}
        target = f"{self.url}/{path.lstrip('/')}"
        try:
            response = self._http.request(path.lstrip("/"), method=method, params=params, json=json,
                                          request_options=options)
        except ApiError as exc:
            raise LabelStudioError(f"{operation}: {method} {target} failed while refreshing the access token "
                                   f"(HTTP {exc.status_code}: {_detail(exc.body)}); check LABEL_STUDIO_API_KEY",
                                   exc.status_code) from None
        except httpx.HTTPError as exc:
            raise LabelStudioError(f"{operation}: {method} {target} failed: {type(exc).__name__}: {exc}; "
                                   "check that Label Studio is running at LABEL_STUDIO_URL") from None
        if response.status_code >= 400:
            hint = " check LABEL_STUDIO_API_KEY;" if response.status_code in (401, 403) else ""
            raise LabelStudioError(f"{operation}: {method} {target} returned HTTP {response.status_code}:"
                                   f"{hint} {_detail(response.text)}", response.status_code)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise LabelStudioError(f"{operation}: {method} {target} returned a body that is not JSON: "
                                   f"{_detail(response.text)}", response.status_code) from None

    # -- reading -------------------------------------------------------------------------

    def get_project(self, project_id: int) -> dict:
        """Return the project as Label Studio serializes it (title, label_config, model_version, ...)."""
        return self.request("GET", f"api/projects/{project_id}/", operation=f"project {project_id}: get project")

    def iter_tasks(self, project_id: int, fields=TASK_FIELDS, page_size: int = PAGE_SIZE) -> Iterator[dict]:
        """Yield every task of the project in id order, keeping only `fields` of each.

        Pages through ``GET /api/tasks`` without a view, so Data Manager filters never apply.
        """
        operation = f"project {project_id}: list tasks"
        page, seen = 1, 0
        while True:
            body = self.request("GET", "api/tasks", operation=operation, timeout=LONG_TIMEOUT,
                                params={"project": project_id, "page": page, "page_size": page_size,
                                        "resolve_uri": "false"})
            tasks = body.get("tasks", [])
            for task in tasks:
                yield {key: task.get(key) for key in fields}
            seen += len(tasks)
            if len(tasks) < page_size or seen >= body.get("total", 0):
                return
            page += 1

    def list_annotations(self, project_id: int) -> list[dict]:
        """Return one record per annotation of every annotated task, skips included.

        Each record has ``task_id``, ``annotation_id``, ``result``, ``was_cancelled``, ``data``
        and ``updated_at``. They are read from the project's JSON export, which lists only tasks
        with at least one annotation.
        """
        tasks = self.request("GET", f"api/projects/{project_id}/export", timeout=LONG_TIMEOUT,
                             operation=f"project {project_id}: export annotations", params={"exportType": "JSON"})
        records = []
        for task in tasks or []:
            for annotation in task.get("annotations", []):
                records.append({
                    "task_id": task["id"],
                    "annotation_id": annotation["id"],
                    "result": annotation.get("result") or [],
                    "was_cancelled": bool(annotation.get("was_cancelled")),
                    "data": task.get("data", {}),
                    "updated_at": annotation.get("updated_at"),
                })
        return records

    # -- writing -------------------------------------------------------------------------

    def import_predictions(self, project_id: int, predictions: list[dict], batch_size: int = 500) -> int:
        """Create predictions in bulk and return how many Label Studio created.

        Each item is ``{"task": id, "result": [...], "score": float, "model_version": str}``.
        ``score`` may be omitted or None, and Label Studio then stores null. One task id outside
        the project makes Label Studio reject the whole batch (HTTP 400).
        """
        created = 0
        for start in range(0, len(predictions), batch_size):
            chunk = predictions[start:start + batch_size]
            body = self.request("POST", f"api/projects/{project_id}/import/predictions", json=chunk,
                                retry=False, timeout=LONG_TIMEOUT,
                                operation=f"project {project_id}: import {len(chunk)} predictions")
            created += int((body or {}).get("created", 0))
        logger.info("project=%s imported %s predictions", project_id, created)
        return created

    def set_task_fields(self, project_id: int, updates: Mapping[int, Mapping[str, object]]) -> None:
        """Merge keys into the data of each task, keeping every other key as stored.

        ``PATCH /api/tasks/{id}`` replaces ``data`` as a whole, so each task is read first.
        """
        for task_id, fields in updates.items():
            operation = f"project {project_id}: update data of task {task_id}"
            task = self.request("GET", f"api/tasks/{task_id}", params={"resolve_uri": "false"}, operation=operation)
            if task.get("project") != project_id:
                raise LabelStudioError(f"{operation}: task {task_id} belongs to project {task.get('project')}, "
                                       f"not {project_id}; pass task ids of this project")
            data = dict(task["data"])
            data.update(fields)
            self.request("PATCH", f"api/tasks/{task_id}", json={"data": data}, operation=operation)
        logger.debug("project=%s updated data of %s tasks", project_id, len(updates))

    def set_model_version(self, project_id: int, version: str) -> None:
        """Make `version` the project's current model version (it must have predictions or a backend)."""
        self.request("PATCH", f"api/projects/{project_id}/", json={"model_version": version},
                     operation=f"project {project_id}: set model version {version!r}")

    def ensure_queue_view(self, project_id: int, rank_key: str, title: str = QUEUE_TITLE) -> int:
        """Create or update a Data Manager tab listing unlabelled tasks by ascending ``data.<rank_key>``.

        The rank column is typed Number so that 10 sorts after 9, and tasks without a rank sort
        last. Returns the view id. Calling again overwrites the same tab.
        """
        operation = f"project {project_id}: queue view {title!r}"
        column = f"tasks:data.{rank_key}"
        data = {
            "title": title,
            "ordering": [column],
            "type": "list",
            "target": "tasks",
            "columnsDisplayType": {column: "Number"},
            "filters": {"conjunction": "and", "items": [
                {"filter": "filter:tasks:total_annotations", "operator": "equal", "type": "Number", "value": 0},
            ]},
            "hiddenColumns": {"explore": [], "labeling": []},
        }
        views = self.request("GET", "api/dm/views/", params={"project": project_id}, operation=operation)
        existing = [view for view in views or [] if (view.get("data") or {}).get("title") == title]
        if existing:
            view_id = existing[0]["id"]
            self.request("PUT", f"api/dm/views/{view_id}/", json={"project": project_id, "data": data},
                         operation=operation)
            return view_id
        view = self.request("POST", "api/dm/views/", json={"project": project_id, "data": data},
                            retry=False, operation=operation)
        logger.info("project=%s created queue view %s", project_id, view["id"])
        return view["id"]

    def secure_webhooks(self, project_id: int, backend_url: str, headers: Mapping[str, str]) -> list[int]:
        """Add `headers` to the project webhooks that Label Studio created for `backend_url`.

        Returns the ids of the webhooks updated. Label Studio accepts at most 10 headers per
        webhook, named with letters, digits, ``-`` and ``_``.
        """
        operation = f"project {project_id}: secure webhooks for {backend_url}"
        target = backend_url.rstrip("/") + "/webhook"
        hooks = self.request("GET", "api/webhooks/", params={"project": project_id}, operation=operation)
        updated = []
        for hook in hooks or []:
            if hook.get("project") != project_id or hook.get("url", "").rstrip("/") != target:
                continue
            merged = {**(hook.get("headers") or {}), **headers}
            self.request("PATCH", f"api/webhooks/{hook['id']}/", json={"headers": merged}, operation=operation)
            updated.append(hook["id"])
        if not updated:
            logger.warning("project=%s no webhook points at %s, so none was secured", project_id, target)
        return updated


def _detail(body, limit: int = 300) -> str:
    """Shorten a response body for an error message."""
    text = str(body).strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "..."
