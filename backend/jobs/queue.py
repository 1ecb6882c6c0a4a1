"""Coalesced job queues: at most one running and one queued job per (kind, project).

`RedisJobQueue` enqueues rq jobs that `mraru worker` processes run; `EmbeddedJobQueue` runs the
same jobs on one thread inside the server process, for set-ups without Redis.
"""

import logging
import queue
import threading
import time
import uuid
from datetime import timedelta
from enum import Enum

logger = logging.getLogger(__name__)

KEY_PREFIX = "mraru"
# A mark younger than this is trusted without looking its job up, because the request that set it
# enqueues the job right after.
MARK_GRACE_S = 10


class JobKind(str, Enum):
    RETRAIN = "retrain"
    ROUND = "round"


def _job_id(kind: JobKind, project_id: int) -> str:
    return f"{kind.value}-{project_id}-{uuid.uuid4().hex[:12]}"


class RedisJobQueue:
    """rq-backed queue with one queued and one running job per (kind, project).

    A Redis key per (kind, project) marks the queued job, and a Redis lock lets only one job run.
    The running job clears the mark only once it holds the lock, so requests that arrive during
    a run queue exactly one follow-up. The lock lives `MRARU_LOCK_TTL` seconds and the running
    job extends it, so a job killed with its worker frees the project within that time.

    Every request is also recorded in MODEL_DIR (`ProjectStore.want_job`). When Redis cannot be
    reached the request returns without a job. A thread of the serving process re-queues every
    owed job (requested, never finished, with no live job) once Redis is reachable again, and
    it also re-queues jobs lost with a killed worker or a Redis restart.
    """

    def __init__(self, settings, connection=None, store=None):
        from redis import Redis
        from rq import Queue

        from ..store import ProjectStore

        self.settings = settings
        self.store = store or ProjectStore(settings.model_dir)
        self.connection = connection or Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=2)
        self.queue = Queue(settings.queue_name, connection=self.connection)
        self._redis_down = False
        self._reconciler = None
        if settings.reconcile_interval and not _inside_rq_job():
            self._reconciler = threading.Thread(target=self._reconcile_forever, name="mraru-reconcile", daemon=True)
            self._reconciler.start()

    def _pending_key(self, kind: JobKind, project_id: int) -> str:
        return f"{KEY_PREFIX}:{self.settings.queue_name}:{kind.value}:pending:{project_id}"

    def _lock_key(self, kind: JobKind, project_id: int) -> str:
        return f"{KEY_PREFIX}:{self.settings.queue_name}:{kind.value}:lock:{project_id}"

    def request(self, kind: JobKind, project_id: int) -> tuple[str | None, bool]:
        """Queue a job unless one is already queued; return `(job_id, newly_queued)`.

        Returns `(None, False)` when Redis cannot be reached: the request is kept in MODEL_DIR and
        queued once Redis is reachable.
        """
        from redis.exceptions import RedisError

        self.store.want_job(kind.value, project_id)
        try:
            return self._submit(kind, project_id)
        except RedisError as exc:
            if not self._redis_down:
                logger.warning("project=%s %s kept for later: Redis at REDIS_URL is unreachable (%s); owed jobs "
                               "are queued once it is reachable", project_id, kind.value, exc)
            self._redis_down = True
            return None, False

    def defer(self, kind: JobKind, project_id: int, delay: float) -> str | None:
        """Queue the job again in `delay` seconds, unless a follow-up is already queued."""
        job_id = _job_id(kind, project_id)
        if not self.connection.set(self._pending_key(kind, project_id), job_id, nx=True,
                                   ex=int(delay) + self.settings.job_timeout + 120):
            return None
        self.queue.enqueue_in(timedelta(seconds=delay), "backend.jobs.tasks.run_job", kind.value, project_id,
                              **self._job_options(kind, project_id, job_id))
        return job_id

    def reconcile(self) -> int:
        """Queue every owed job that has no live job in Redis; return how many were queued."""
        queued = 0
        for kind_value, project_id in self.store.owed_jobs():
            kind = JobKind(kind_value)
            if self.connection.exists(self._lock_key(kind, project_id)):
                continue
            job_id, new = self._submit(kind, project_id)
            if new:
                queued += 1
                logger.info("project=%s job=%s re-queued owed %s", project_id, job_id, kind.value)
        return queued

    def hold(self, kind: JobKind, project_id: int, job_id: str | None):
        """Return a context manager that a running job holds for the whole run."""
        return _RedisRun(self, kind, project_id, job_id)

    def _submit(self, kind: JobKind, project_id: int) -> tuple[str, bool]:
        job_id = _job_id(kind, project_id)
        pending = self._pending_key(kind, project_id)
        for _ in range(2):
            if self.connection.set(pending, job_id, nx=True, ex=self.settings.job_timeout + 120):
                break
            existing = self.connection.get(pending)
            if existing is not None and (self._just_marked(pending) or self._is_live(existing.decode())):
                return existing.decode(), False
            # The marked job is gone (a Redis restart, a killed worker): drop the stale mark.
            self._delete_if_equal(pending, existing)
        else:
            existing = self.connection.get(pending)
            return (existing.decode() if existing else job_id), False
        try:
            self.queue.enqueue_call("backend.jobs.tasks.run_job", args=(kind.value, project_id),
                                    **self._job_options(kind, project_id, job_id, call=True))
        except Exception:
            self.connection.delete(pending)
            raise
        logger.info("project=%s job=%s queued %s", project_id, job_id, kind.value)
        return job_id, True

    def _job_options(self, kind: JobKind, project_id: int, job_id: str, call: bool = False) -> dict:
        from rq import Retry

        return {"job_id": job_id, ("timeout" if call else "job_timeout"): self.settings.job_timeout,
                "result_ttl": 86400, "failure_ttl": 7 * 86400, "retry": Retry(max=3, interval=[5, 30, 120]),
                "description": f"{kind.value} project={project_id}"}

    def _just_marked(self, pending: str) -> bool:
        """True while the request that set the mark may still be enqueueing its job."""
        return self.connection.ttl(pending) > self.settings.job_timeout + 120 - MARK_GRACE_S

    def _is_live(self, job_id: str) -> bool:
        from rq.exceptions import NoSuchJobError
        from rq.job import Job, JobStatus

        try:
            status = Job.fetch(job_id, connection=self.connection).get_status()
        except NoSuchJobError:
            return False
        return status in (JobStatus.QUEUED, JobStatus.STARTED, JobStatus.SCHEDULED, JobStatus.DEFERRED)

    def _delete_if_equal(self, key: str, value: bytes | None) -> None:
        from redis.exceptions import WatchError

        if value is None:
            return
        with self.connection.pipeline() as pipeline:
            try:
                pipeline.watch(key)
                if pipeline.get(key) == value:
                    pipeline.multi()
                    pipeline.delete(key)
                    pipeline.execute()
            except WatchError:  # another request replaced the mark first, which is what we wanted
                pass

    def _reconcile_forever(self) -> None:
        from redis.exceptions import RedisError

        while True:
            time.sleep(min(1.0, self.settings.reconcile_interval) if self._redis_down
                       else self.settings.reconcile_interval)
            try:
                queued = self.reconcile()
            except RedisError as exc:
                logger.debug("reconcile: Redis unreachable: %s", exc)
                continue
            except Exception:
                logger.exception("reconcile failed")
                continue
            if self._redis_down:
                logger.info("Redis is reachable again; %s owed jobs queued", queued)
                self._redis_down = False


class _RedisRun:
    def __init__(self, owner: RedisJobQueue, kind: JobKind, project_id: int, job_id: str | None):
        self.owner = owner
        self.kind = kind
        self.project_id = project_id
        self.job_id = job_id
        self.ttl = owner.settings.lock_ttl
        # thread_local=False lets the heartbeat thread extend the lock this thread took.
        self.lock = owner.connection.lock(owner._lock_key(kind, project_id), timeout=self.ttl, thread_local=False)
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, name="mraru-lock", daemon=True)

    def __enter__(self):
        connection = self.owner.connection
        pending = self.owner._pending_key(self.kind, self.project_id)
        deadline = time.monotonic() + self.owner.settings.job_timeout
        while not self.lock.acquire(blocking=False):
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"project={self.project_id}: another {self.kind.value} job held the lock for over "
                    f"{self.owner.settings.job_timeout} s"
                )
            # While this job waits, its mark lives only as long as the lock would: if this
            # worker dies now, the next request is not coalesced into a dead job.
            if self.job_id is not None and connection.get(pending) == self.job_id.encode():
                connection.expire(pending, self.ttl)
            time.sleep(0.2)
        self._beat.start()
        current = connection.get(pending)
        if current is not None and (self.job_id is None or current.decode() == self.job_id):
            self.owner.connection.delete(pending)
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._beat.join()
        try:
            self.lock.release()
        except Exception:  # the lock expired; the next job is already free to run
            logger.warning("project=%s %s lock expired before the job ended", self.project_id, self.kind.value)
        return False

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.lock.extend(self.ttl, replace_ttl=True)
            except Exception as exc:  # Redis away or the lock lost; the job itself goes on
                logger.warning("project=%s %s lock not extended: %s", self.project_id, self.kind.value, exc)


class EmbeddedJobQueue:
    """In-process queue with one worker thread, used when REDIS_URL is not set."""

    def __init__(self, settings, runner, store=None):
        from ..store import ProjectStore

        self.settings = settings
        self.store = store or ProjectStore(settings.model_dir)
        self._runner = runner
        self._pending: dict[tuple[JobKind, int], str] = {}
        self._lock = threading.Lock()
        self._jobs: queue.Queue = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._work, name="mraru-embedded-worker", daemon=True)
        self._thread.start()
        # Jobs owed when the last server process stopped run again.
        for kind_value, project_id in self.store.owed_jobs():
            self._put(JobKind(kind_value), project_id)

    def request(self, kind: JobKind, project_id: int) -> tuple[str, bool]:
        self.store.want_job(kind.value, project_id)
        return self._put(kind, project_id)

    def defer(self, kind: JobKind, project_id: int, delay: float) -> None:
        """Queue the job again in `delay` seconds."""
        timer = threading.Timer(delay, self._put, (kind, project_id))
        timer.daemon = True
        timer.start()

    def _put(self, kind: JobKind, project_id: int) -> tuple[str, bool]:
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


def _inside_rq_job() -> bool:
    from rq import get_current_job

    return get_current_job() is not None


def make_queue(settings, runner):
    """Return a Redis queue when REDIS_URL is set, else an embedded one that calls `runner`."""
    if settings.redis_url:
        return RedisJobQueue(settings)
    return EmbeddedJobQueue(settings, runner)
