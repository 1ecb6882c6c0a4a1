"""The Label Studio ML backend class, with the interface of label-studio-ml's `LabelStudioMLBase`.

`predict(tasks, context=None, **kwargs)` predicts with the newest published student and never
calls the teacher. `fit(event, data, **kwargs)` records the event and queues a retrain. Both
return within Label Studio's request timeouts. The HTTP server in `backend.server` calls this class.
"""

import functools
import logging

from backend.jobs.queue import JobKind
from backend.labels import LabelSpec, UnsupportedConfigError, parse_label_config
from backend.prediction import predict_tasks
from backend.services import Services, process_services

logger = logging.getLogger(__name__)

ANNOTATION_EVENTS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")
DELETE_EVENT = "ANNOTATIONS_DELETED"
TRAIN_EVENT = "START_TRAINING"
SUPPORTED_EVENTS = (*ANNOTATION_EVENTS, DELETE_EVENT, TRAIN_EVENT)


MAX_CACHED_CONFIG_CHARS = 64 * 1024


@functools.lru_cache(maxsize=256)
def _cached_spec(label_config: str) -> LabelSpec:
    return parse_label_config(label_config)


def cached_spec(label_config: str) -> LabelSpec:
    """Parse a label config and cache the result for configs up to 64 KB.

    Larger configs are parsed on each call, so a client cannot fill memory with cache entries.
    """
    if len(label_config) > MAX_CACHED_CONFIG_CHARS:
        return parse_label_config(label_config)
    return _cached_spec(label_config)


class MraruModel:
    """One project's view of the backend: its label config, its student versions and its jobs."""

    def __init__(self, project_id: int | None = None, label_config: str | None = None,
                 services: Services | None = None, **kwargs):
        self.services = services or process_services()
        self.project_id = project_id
        if label_config is None and project_id is not None:
            label_config = self.services.store.project_config(project_id)
        self.label_config = label_config
        self.extra_params = kwargs.get("extra_params")

    @property
    def model_version(self) -> str:
        if self.project_id is None:
            return "mraru-v0"
        return self.services.store.model_version(self.project_id)

    @property
    def label_spec(self) -> LabelSpec:
        """The parsed config; raises UnsupportedConfigError when this backend cannot serve it."""
        return cached_spec(self.label_config or "")

    def setup(self, hostname: str | None = None, backend_url: str | None = None) -> str:
        """Register the project's config; queue the first round the first time a project is seen."""
        self.label_spec  # raises UnsupportedConfigError before anything is stored
        is_new = self.services.store.register_project(self.project_id, self.label_config, hostname, backend_url)
        if is_new:
            logger.info("project=%s registered", self.project_id)
            if self.services.settings.label_studio_enabled:
                self.services.queue.request(JobKind.ROUND, self.project_id)
        return self.model_version

    def predict(self, tasks: list, context: dict | None = None, **kwargs) -> list[dict]:
        """Return one prediction per task, in task order; empty results where no label can be given."""
        try:
            spec = self.label_spec
        except UnsupportedConfigError as exc:
            logger.warning("project=%s predict with an unsupported config: %s", self.project_id, exc)
            spec = None
        bundle = self.services.store.load_latest(self.project_id) if self.project_id is not None else None
        version = bundle.model_version if bundle else self.model_version
        return predict_tasks(spec, bundle, tasks, version)

    def fit(self, event: str, data: dict, **kwargs) -> dict:
        """Record an annotation event and queue a coalesced retrain of the project."""
        store = self.services.store
        if event in ANNOTATION_EVENTS:
            annotation = data["annotation"]
            task = data["task"]
            store.upsert_annotation(
                self.project_id, task["id"], annotation["id"], task.get("data") or {},
                annotation.get("result") or [], annotation.get("was_cancelled", False),
            )
        elif event == DELETE_EVENT:
            store.delete_annotations(item["id"] for item in data["annotations"])
        job_id, queued = self.services.queue.request(JobKind.RETRAIN, self.project_id)
        return {"job_id": job_id, "queued": queued}
