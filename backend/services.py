"""The objects one process shares: settings, store, job queue, teacher and Label Studio client."""

import logging
import threading
from pathlib import Path

from .config import Settings
from .store import ProjectStore

logger = logging.getLogger(__name__)


class Services:
    """Build process-wide collaborators lazily from `settings`.

    The teacher and the Label Studio client are None when their settings are missing, and the
    job queue is embedded when REDIS_URL is not set.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store = ProjectStore(settings.model_dir)
        self._lock = threading.Lock()
        self._queue = None
        self._teacher = None
        self._label_studio = None

    def warm_up(self) -> None:
        """Import the training and queue stack now, so no request pays for it.

        Importing scikit-learn takes seconds, longer than Label Studio's 3 s `/setup` timeout.
        The queue itself is still built on first use: an embedded queue's thread would not
        survive gunicorn forking its workers.
        """
        from . import loop, prediction, students  # noqa: F401

        if self.settings.redis_url:
            import rq  # noqa: F401

    @property
    def queue(self):
        with self._lock:
            if self._queue is None:
                from .jobs.queue import make_queue
                from .loop import run_job_kind

                self._queue = make_queue(self.settings, lambda kind, project_id, job_id: run_job_kind(
                    self, kind, project_id, job_id))
            return self._queue

    @property
    def teacher(self):
        if not self.settings.openai_base_url:
            return None
        with self._lock:
            if self._teacher is None:
                from .teacher import AnswerCache, Teacher

                self._teacher = Teacher(self.settings, AnswerCache(Path(self.settings.model_dir) / "teacher.sqlite3"))
            return self._teacher

    @property
    def label_studio(self):
        if not self.settings.label_studio_enabled:
            return None
        with self._lock:
            if self._label_studio is None:
                from .ls.client import LabelStudioClient

                self._label_studio = LabelStudioClient(self.settings.label_studio_url, self.settings.label_studio_api_key)
            return self._label_studio


_process_services: Services | None = None
_process_lock = threading.Lock()


def process_services() -> Services:
    """Return the Services of this process, built from the environment on first use (rq workers)."""
    global _process_services
    with _process_lock:
        if _process_services is None:
            _process_services = Services(Settings.from_env())
        return _process_services
