"""Coalesced job queues: at most one running and one queued job per (kind, project).

`RedisJobQueue` enqueues rq jobs that `mraru worker` processes run; `EmbeddedJobQueue` runs the
same jobs on one thread inside the server process, for set-ups without Redis.
"""

import logging
import queue
import threading
import uuid
from enum import Enum

logger = logging.getLogger(__name__)

KEY_PREFIX = "mraru"


class JobKind(str, Enum):
    RETRAIN = "retrain"
    ROUND = "round"


def _job_id(kind: JobKind, project_id: int) -> str:
    return f"{kind.value}-{project_id}-{uuid.uuid4().hex[:12]}"


class RedisJobQueue:
    """rq-backed queue with one queued and one running job per (kind, project).

    A Redis key per (kind, project) marks the queued job, and a Redis lock lets only one job run.
    The running job clears the mark only once it holds the lock, so requests that arrive during
    a run queue exactly one follow-up.
    """

    def __init__(self, settings, connection=None):
        from redis import Redis
        from rq import Queue

        self.settings = settings
        self.connection = connection or Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.queue = Queue(settings.queue_name, connection=self.connection)

    def _pending_key(self, kind: JobKind, project_id: int) -> str:
        return f"{KEY_PREFIX}:{self.settings.queue_name}:{kind.value}:pending:{project_id}"

    def _lock_key(self, kind: JobKind, project_id: int) -> str:
        return f"{KEY_PREFIX}:{self.settings.queue_name}:{kind.value}:lock:{project_id}"

    def request(self, kind: JobKind, project_id: int) -> tuple[str, bool]:
        """Queue a job unless one is already queued; return `(job_id, newly_queued)`."""
        from rq import Retry

        job_id = _job_id(kind, project_id)
        pending = self._pending_key(kind, project_id)
        # The mark expires after the job timeout plus 120 s, so a job lost with its worker
        # blocks new requests for that long at most.
        if not self.connection.set(pending, job_id, nx=True, ex=self.settings.job_timeout + 120):
            existing = self.connection.get(pending)
            return (existing.decode() if existing else job_id), False
        try:
            self.queue.enqueue_call(
                "backend.jobs.tasks.run_job",
                args=(kind.value, project_id),
                job_id=job_id,
                timeout=self.settings.job_timeout,
                result_ttl=86400,
                failure_ttl=7 * 86400,
                retry=Retry(max=3, interval=[5, 30, 120]),
                description=f"{kind.value} project={project_id}",
            )
        except Exception:
            self.connection.delete(pending)
            raise
        logger.info("project=%s job=%s queued %s", project_id, job_id, kind.value)
        return job_id, True

    def hold(self, kind: JobKind, project_id: int, job_id: str | None):
        """Return a context manager that a running job holds for the whole run."""
        return _RedisRun(self, kind, project_id, job_id)


class _RedisRun:
    def __init__(self, owner: RedisJobQueue, kind: JobKind, project_id: int, job_id: str | None):
        self.owner = owner
        self.kind = kind
        self.project_id = project_id
        self.job_id = job_id
        timeout = owner.settings.job_timeout + 60
        self.lock = owner.connection.lock(owner._lock_key(kind, project_id), timeout=timeout,
                                          blocking_timeout=timeout)

    def __enter__(self):
        if not self.lock.acquire():
            raise TimeoutError(
                f"project={self.project_id}: another {self.kind.value} job held the lock for over "
                f"{self.owner.settings.job_timeout} s"
            )
        pending = self.owner._pending_key(self.kind, self.project_id)
        current = self.owner.connection.get(pending)
        if current is not None and (self.job_id is None or current.decode() == self.job_id):
            self.owner.connection.delete(pending)
        return self

    def __exit__(self, *exc_info):
        try:
            self.lock.release()
        except Exception:  # the lock expired; the next job is already free to run
            logger.warning("project=%s %s lock expired before the job ended", self.project_id, self.kind.value)
        return False


class EmbeddedJobQueue:
    """In-process queue with one worker thread, used when REDIS_URL is not set."""

    def __init__(self, settings, runner):
        self.settings = settings
        self._runner = runner
        self._pending: dict[tuple[JobKind, int], str] = {}
        self._lock = threading.Lock()
        self._jobs: queue.Queue = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._work, name="mraru-embedded-worker", daemon=True)
        self._thread.start()

    def request(self, kind: JobKind, project_id: int) -> tuple[str, bool]:
        with self._lock:
            existing = self._pending.get((kind, project_id))
            if existing is not None:
                return existing, False
            job_id = _job_id(kind, project_id)
            self._pending[(kind, project_id)] = job_id
            self._idle.clear()
        self._jobs.put((kind, project_id, job_id))
        logger.info("project=%s job=%s queued %s (embedded)", project_id, job_id, kind.value)
        return job_id, True

    def hold(self, kind: JobKind, project_id: int, job_id: str | None):
        return _NullRun()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no job is queued or running; return False on timeout."""
        return self._idle.wait(timeout)

    def _work(self) -> None:
        while True:
            kind, project_id, job_id = self._jobs.get()
            with self._lock:
                self._pending.pop((kind, project_id), None)
            try:
                self._runner(kind, project_id, job_id)
            except Exception:
                logger.exception("project=%s job=%s %s failed", project_id, job_id, kind.value)
            finally:
                with self._lock:
                    if self._jobs.empty() and not self._pending:
                        self._idle.set()


class _NullRun:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        return False


def make_queue(settings, runner):
    """Return a Redis queue when REDIS_URL is set, else an embedded one that calls `runner`."""
    if settings.redis_url:
        return RedisJobQueue(settings)
    return EmbeddedJobQueue(settings, runner)
