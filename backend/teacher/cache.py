"""A sqlite store of teacher answers, shared by the web process and the workers.

Every answer the teacher model gives (valid or not, with its raw text and token usage) is written
here before it is used, keyed by (model, prompt hash, text hash). Transport failures are never
stored, so they are asked again next round. WAL mode and a busy timeout let several processes
read and write the same file.
"""

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    model TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    text_hash TEXT NOT NULL,
    labels TEXT NOT NULL,
    valid INTEGER NOT NULL,
    raw TEXT NOT NULL,
    error TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (model, prompt_hash, text_hash)
)
"""


@dataclass(frozen=True)
class CachedAnswer:
    """A stored teacher answer."""

    labels: tuple[str, ...]
    valid: bool
    raw: str
    error: str | None
    prompt_tokens: int
    completion_tokens: int


class AnswerCache:
    """Teacher answers in a sqlite file, safe to share across threads and processes.

    Parameters
    ----------
    path : str or Path
        The sqlite file, e.g. ``MODEL_DIR/teacher.sqlite3``; its folder is created if missing.
    """

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(_SCHEMA)

    def get(self, model: str, prompt_hash: str, text_hash: str) -> CachedAnswer | None:
        """Return the stored answer for this key, or None."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT labels, valid, raw, error, prompt_tokens, completion_tokens FROM answers "
                "WHERE model = ? AND prompt_hash = ? AND text_hash = ?",
                (model, prompt_hash, text_hash),
            ).fetchone()
        if row is None:
            return None
        labels, valid, raw, error, prompt_tokens, completion_tokens = row
        return CachedAnswer(tuple(json.loads(labels)), bool(valid), raw, error, prompt_tokens, completion_tokens)

    def put(self, model: str, prompt_hash: str, text_hash: str, answer: CachedAnswer) -> None:
        """Store `answer` under this key, replacing any earlier one; durable when this returns."""
        with self._connect() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    model,
                    prompt_hash,
                    text_hash,
                    json.dumps(list(answer.labels), ensure_ascii=False),
                    int(answer.valid),
                    answer.raw,
                    answer.error,
                    answer.prompt_tokens,
                    answer.completion_tokens,
                    time.time(),
                ),
            )
        logger.debug("model=%s prompt=%s text=%s: answer stored", model, prompt_hash[:12], text_hash[:12])

    def __len__(self) -> int:
        with self._connect() as conn:
            return conn.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def _connect(self) -> "_Connection":
        return _Connection(self.path)


class _Connection:
    """A short-lived connection that commits on success and always closes."""

    def __init__(self, path: Path) -> None:
        self._conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S)
        self._conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")

    def __enter__(self) -> sqlite3.Connection:
        return self._conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                self._conn.commit()
            else:
                self._conn.rollback()
        finally:
            self._conn.close()
