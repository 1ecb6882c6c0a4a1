"""Durable project state in MODEL_DIR: projects, annotations, rounds and versioned student artifacts.

Small records live in one SQLite database in WAL mode, which several server and worker
processes share. Fitted students are pickles written to a temporary file and published with
`os.replace`, so a reader sees either the previous version or the complete new one.
"""

import json
import logging
import os
import pickle
import sqlite3
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

VERSION_PREFIX = "mraru-v"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    project_id INTEGER PRIMARY KEY,
    label_config TEXT NOT NULL,
    hostname TEXT,
    backend_url TEXT,
    registered_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS annotations (
    annotation_id INTEGER PRIMARY KEY,
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    data TEXT NOT NULL,
    result TEXT NOT NULL,
    was_cancelled INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_project ON annotations (project_id, task_id);
CREATE TABLE IF NOT EXISTS rounds (
    project_id INTEGER NOT NULL,
    round_no INTEGER NOT NULL,
    record TEXT NOT NULL,
    finished_at REAL NOT NULL,
    PRIMARY KEY (project_id, round_no)
);
CREATE TABLE IF NOT EXISTS job_requests (
    kind TEXT NOT NULL,
    project_id INTEGER NOT NULL,
    requested INTEGER NOT NULL,
    done INTEGER NOT NULL,
    failed INTEGER NOT NULL,
    deferrals INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, project_id)
);
CREATE TABLE IF NOT EXISTS picks (
    project_id INTEGER NOT NULL,
    task_id INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    round_no INTEGER NOT NULL,
    PRIMARY KEY (project_id, task_id)
);
"""


@dataclass
class StudentBundle:
    """A published student: one fitted estimator per `<Choices>` block, with training facts."""

    version: int
    student: str
    estimators: dict = field(default_factory=dict)
    classes: dict = field(default_factory=dict)
    n_examples: dict = field(default_factory=dict)
    label_config: str = ""
    trained_at: float = 0.0

    @property
    def model_version(self) -> str:
        return version_name(self.version)


def version_name(number: int) -> str:
    return f"{VERSION_PREFIX}{number}"


class ProjectStore:
    """Project records and student versions under `model_dir`, safe to share between processes."""

    def __init__(self, model_dir: str | os.PathLike):
        self.root = Path(model_dir)
        self.root.mkdir(parents=True, exist_ok=True)
        self._db_path = self.root / "state.sqlite3"
        self._local = threading.local()
        self._models: dict[int, StudentBundle] = {}
        self._models_lock = threading.Lock()
        # A short-lived connection, so no connection is inherited by processes forked later.
        connection = sqlite3.connect(self._db_path, timeout=30)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            connection.executescript(_SCHEMA)
        finally:
            connection.close()

    def _connect(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(self._db_path, timeout=30, isolation_level=None)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            self._local.connection = connection
        return connection

    # Projects -------------------------------------------------------------------------------

    def register_project(self, project_id: int, label_config: str, hostname: str | None,
                         backend_url: str | None = None) -> bool:
        """Store the project's label config; return True when the project was not known before.

        `backend_url` is the address Label Studio used to reach this backend, kept so rounds can
        find the project webhook that points here.
        """
        now = time.time()
        connection = self._connect()
        cursor = connection.execute(
            "INSERT OR IGNORE INTO projects VALUES (?, ?, ?, ?, ?, ?)",
            (project_id, label_config, hostname, backend_url, now, now),
        )
        if cursor.rowcount:
            return True
        connection.execute(
            "UPDATE projects SET label_config = ?, hostname = COALESCE(?, hostname), "
            "backend_url = COALESCE(?, backend_url), updated_at = ? "
            "WHERE project_id = ? AND (label_config != ? OR hostname IS NOT ? OR backend_url IS NOT ?)",
            (label_config, hostname, backend_url, now, project_id, label_config, hostname, backend_url),
        )
        return False

    def backend_url(self, project_id: int) -> str | None:
        row = self._connect().execute(
            "SELECT backend_url FROM projects WHERE project_id = ?", (project_id,)
        ).fetchone()
        return row[0] if row else None

    def project_config(self, project_id: int) -> str | None:
        row = self._connect().execute(
            "SELECT label_config FROM projects WHERE project_id = ?", (project_id,)
        ).fetchone()
        return row[0] if row else None

    def project_ids(self) -> list[int]:
        return [row[0] for row in self._connect().execute("SELECT project_id FROM projects")]

    # Annotations ----------------------------------------------------------------------------

    def upsert_annotation(self, project_id, task_id, annotation_id, data, result, was_cancelled) -> None:
        self._connect().execute(
            "INSERT INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(annotation_id) DO UPDATE SET "
            "project_id = excluded.project_id, task_id = excluded.task_id, data = excluded.data, "
            "result = excluded.result, was_cancelled = excluded.was_cancelled, updated_at = excluded.updated_at",
            (
                annotation_id,
                project_id,
                task_id,
                json.dumps(data, ensure_ascii=False),
                json.dumps(result, ensure_ascii=False),
                int(bool(was_cancelled)),
                time.time(),
            ),
        )

    def delete_annotations(self, annotation_ids) -> int:
        ids = [int(annotation_id) for annotation_id in annotation_ids]
        if not ids:
            return 0
        placeholders = ",".join("?" * len(ids))
        cursor = self._connect().execute(f"DELETE FROM annotations WHERE annotation_id IN ({placeholders})", ids)
        return cursor.rowcount

    def replace_annotations(self, project_id: int, records: list[dict]) -> None:
        """Make the stored annotations of a project equal `records` (a full sync from Label Studio)."""
        connection = self._connect()
        connection.execute("BEGIN IMMEDIATE")
        try:
            connection.execute("DELETE FROM annotations WHERE project_id = ?", (project_id,))
            now = time.time()
            connection.executemany(
                "INSERT OR REPLACE INTO annotations VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        int(record["annotation_id"]),
                        project_id,
                        int(record["task_id"]),
                        json.dumps(record.get("data") or {}, ensure_ascii=False),
                        json.dumps(record.get("result") or [], ensure_ascii=False),
                        int(bool(record.get("was_cancelled"))),
                        now,
                    )
                    for record in records
                ],
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def annotations(self, project_id: int) -> list[dict]:
        """Return the latest annotation of each task, skipped ones included (callers filter them)."""
        rows = self._connect().execute(
            "SELECT annotation_id, task_id, data, result, was_cancelled FROM annotations "
            "WHERE project_id = ? ORDER BY task_id, updated_at, annotation_id",
            (project_id,),
        ).fetchall()
        latest = {}
        for annotation_id, task_id, data, result, was_cancelled in rows:
            latest[task_id] = {
                "annotation_id": annotation_id,
                "task_id": task_id,
                "data": json.loads(data),
                "result": json.loads(result),
                "was_cancelled": bool(was_cancelled),
            }
        return list(latest.values())

    def annotated_task_ids(self, project_id: int) -> set[int]:
        rows = self._connect().execute("SELECT DISTINCT task_id FROM annotations WHERE project_id = ?", (project_id,))
        return {row[0] for row in rows}

    # Rounds and picks -----------------------------------------------------------------------

    def next_round_no(self, project_id: int) -> int:
        row = self._connect().execute(
            "SELECT COALESCE(MAX(round_no), 0) FROM rounds WHERE project_id = ?", (project_id,)
        ).fetchone()
        return row[0] + 1

    def record_round(self, project_id: int, round_no: int, record: dict, picks: list[int]) -> None:
        connection = self._connect()
        connection.execute("BEGIN IMMEDIATE")
        try:
            first_rank = connection.execute(
                "SELECT COALESCE(MAX(rank), 0) FROM picks WHERE project_id = ?", (project_id,)
            ).fetchone()[0] + 1
            connection.executemany(
                "INSERT OR IGNORE INTO picks VALUES (?, ?, ?, ?)",
                [(project_id, task_id, first_rank + offset, round_no) for offset, task_id in enumerate(picks)],
            )
            record = dict(record, first_rank=first_rank)
            connection.execute(
                "INSERT OR REPLACE INTO rounds VALUES (?, ?, ?, ?)",
                (project_id, round_no, json.dumps(record), time.time()),
            )
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise

    def rounds(self, project_id: int) -> list[dict]:
        rows = self._connect().execute(
            "SELECT round_no, record FROM rounds WHERE project_id = ? ORDER BY round_no", (project_id,)
        )
        return [dict(json.loads(record), round=round_no) for round_no, record in rows]

    def picked_ranks(self, project_id: int) -> dict[int, int]:
        rows = self._connect().execute("SELECT task_id, rank FROM picks WHERE project_id = ?", (project_id,))
        return dict(rows.fetchall())

    # Job requests -------------------------------------------------------------------------
    # Every request for a (kind, project) job raises `requested`. A job that ends normally sets
    # `done` to the value it saw when it started, and one that raises sets `failed`. While
    # `requested` is above both, work is owed, even when the queue that contained it was lost.

    def want_job(self, kind: str, project_id: int) -> int:
        """Record a request for a job and return its sequence number."""
        row = self._connect().execute(
            "INSERT INTO job_requests VALUES (?, ?, 1, 0, 0, 0) ON CONFLICT(kind, project_id) DO UPDATE SET "
            "requested = requested + 1 RETURNING requested",
            (kind, project_id),
        ).fetchone()
        return row[0]

    def job_state(self, kind: str, project_id: int) -> tuple[int, int]:
        """Return `(requested, done)` for a job."""
        row = self._connect().execute(
            "SELECT requested, done FROM job_requests WHERE kind = ? AND project_id = ?", (kind, project_id)
        ).fetchone()
        return (row[0], row[1]) if row else (0, 0)

    def finish_job(self, kind: str, project_id: int, seq: int, failed: bool = False) -> int:
        """Mark a job's run as ended; return how many times it was deferred before this run."""
        column = "failed" if failed else "done"
        connection = self._connect()
        row = connection.execute("SELECT deferrals FROM job_requests WHERE kind = ? AND project_id = ?",
                                 (kind, project_id)).fetchone()
        connection.execute(
            f"UPDATE job_requests SET {column} = MAX({column}, ?), deferrals = 0 WHERE kind = ? AND project_id = ?",
            (seq, kind, project_id),
        )
        return row[0] if row else 0

    def defer_job(self, kind: str, project_id: int) -> int:
        """Count one more deferral of a job and return the count."""
        row = self._connect().execute(
            "UPDATE job_requests SET deferrals = deferrals + 1 WHERE kind = ? AND project_id = ? RETURNING deferrals",
            (kind, project_id),
        ).fetchone()
        return row[0] if row else 1

    def owed_jobs(self) -> list[tuple[str, int]]:
        """Return the `(kind, project_id)` jobs requested after their last run ended."""
        rows = self._connect().execute(
            "SELECT kind, project_id FROM job_requests WHERE requested > done AND requested > failed"
        )
        return [(kind, project_id) for kind, project_id in rows]

    # Student versions -----------------------------------------------------------------------

    def _project_dir(self, project_id: int) -> Path:
        return self.root / "projects" / str(int(project_id))

    def latest_version(self, project_id: int) -> int:
        """Return the newest published version number, 0 when no student was trained yet."""
        try:
            return int((self._project_dir(project_id) / "LATEST").read_text())
        except FileNotFoundError:
            return 0

    def model_version(self, project_id: int) -> str:
        return version_name(self.latest_version(project_id))

    def versions(self, project_id: int) -> list[str]:
        return [version_name(number) for number in range(self.latest_version(project_id) + 1)]

    def load_latest(self, project_id: int) -> StudentBundle | None:
        """Return the newest student, loading it only when another process has published a new one."""
        number = self.latest_version(project_id)
        if number == 0:
            return None
        cached = self._models.get(project_id)
        if cached is not None and cached.version == number:
            return cached
        path = self._project_dir(project_id) / f"v{number}.pkl"
        with path.open("rb") as handle:
            bundle = pickle.load(handle)
        with self._models_lock:
            self._models[project_id] = bundle
        logger.info("project=%s loaded student version %s", project_id, bundle.model_version)
        return bundle

    def publish(self, project_id: int, bundle: StudentBundle) -> str:
        """Write `bundle` as the next version atomically and return its model_version."""
        directory = self._project_dir(project_id)
        directory.mkdir(parents=True, exist_ok=True)
        # Only the job holding the project's retrain lock publishes, so any temporary file here
        # was left by a writer that was killed, and is never read.
        for leftover in directory.glob(".*.tmp"):
            leftover.unlink(missing_ok=True)
        bundle.version = self.latest_version(project_id) + 1
        bundle.trained_at = time.time()
        _atomic_write(directory / f"v{bundle.version}.pkl", pickle.dumps(bundle, protocol=pickle.HIGHEST_PROTOCOL))
        _atomic_write(directory / "LATEST", str(bundle.version).encode())
        with self._models_lock:
            self._models[project_id] = bundle
        return bundle.model_version


def _atomic_write(path: Path, payload: bytes) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
