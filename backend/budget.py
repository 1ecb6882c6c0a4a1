"""A teacher budget shared by every server and worker process on one MODEL_DIR.

The budget caps teacher answers (`MRARU_BUDGET_LABELS`), tokens (`MRARU_BUDGET_TOKENS`) or money
(`MRARU_BUDGET_USD` at `MRARU_PRICE_PER_1K_TOKENS`); 0 means unlimited. Before each teacher call
a round reserves an upper bound of what the call can cost, in one `BEGIN IMMEDIATE` transaction on
MODEL_DIR/state.sqlite3, so concurrent workers can never reserve the same remainder twice. After
the call the reservation is settled with the usage the server reported. A reservation that is
never settled (its worker was killed) counts as spent in full once it is older than the job
timeout, because the calls it covered may have been billed.
"""

import json
import logging
import math
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .teacher import prompts

logger = logging.getLogger(__name__)

# Chat templates add a few tokens per message. This estimate is generous, so the bound stays an upper bound.
MESSAGE_OVERHEAD_TOKENS = 8
# How often a round polls while other workers hold the rest of the budget.
WAIT_S = 0.2

_SCHEMA = """
CREATE TABLE IF NOT EXISTS budget_spent (
    project_id INTEGER NOT NULL,
    labels INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS budget_reservations (
    reservation_id TEXT PRIMARY KEY,
    project_id INTEGER NOT NULL,
    labels INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    created_at REAL NOT NULL
);
"""


@dataclass(frozen=True)
class Reservation:
    """Budget held for one teacher call: the first `granted` items may be sent."""

    reservation_id: str
    project_id: int
    granted: int
    labels: int
    tokens: int


class TeacherBudget:
    """Atomic reservations against the configured teacher budget.

    Parameters
    ----------
    settings : backend.config.Settings
        Reads ``model_dir``, ``budget_labels``, ``budget_tokens``, ``budget_usd``,
        ``price_per_1k_tokens`` and ``job_timeout``.
    """

    def __init__(self, settings) -> None:
        self.settings = settings
        self.path = Path(settings.model_dir) / "state.sqlite3"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.label_limit = settings.budget_labels or math.inf
        token_limit = settings.budget_tokens or math.inf
        if settings.budget_usd:
            token_limit = min(token_limit, math.floor(settings.budget_usd / settings.price_per_1k_tokens * 1000))
        self.token_limit = token_limit
        self.stale_after = settings.job_timeout + 60
        with self._connect() as connection:
            connection.executescript(_SCHEMA)

    @property
    def limited(self) -> bool:
        return self.label_limit != math.inf or self.token_limit != math.inf

    def reserve(self, project_id: int, token_bounds: list[int]) -> Reservation:
        """Reserve budget for as many leading items as fit; one item per entry of `token_bounds`.

        Each entry is an upper bound of the tokens (prompt and answer) that item's call can use.
        """
        reservation_id = uuid.uuid4().hex
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            self._expire_stale(connection)
            labels_used, tokens_used = self._committed(connection)
            granted, tokens = 0, 0
            for bound in token_bounds:
                if labels_used + granted + 1 > self.label_limit or tokens_used + tokens + bound > self.token_limit:
                    break
                granted += 1
                tokens += bound
            if granted:
                connection.execute("INSERT INTO budget_reservations VALUES (?, ?, ?, ?, ?)",
                                   (reservation_id, project_id, granted, tokens, time.time()))
            connection.execute("COMMIT")
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()
        return Reservation(reservation_id, project_id, granted, granted, tokens)

    def settle(self, reservation: Reservation, labels: int, tokens: int) -> None:
        """Replace a reservation by what its call really used."""
        if not reservation.granted:
            return
        if labels > reservation.labels or tokens > reservation.tokens:
            logger.warning("project=%s teacher used %s labels and %s tokens, more than the %s and %s reserved; "
                           "the budget may be exceeded by the difference", reservation.project_id, labels, tokens,
                           reservation.labels, reservation.tokens)
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            cursor = connection.execute("DELETE FROM budget_reservations WHERE reservation_id = ?",
                                        (reservation.reservation_id,))
            # An expired reservation was already counted as spent in full.
            if cursor.rowcount and (labels or tokens):
                connection.execute("INSERT INTO budget_spent VALUES (?, ?, ?, ?)",
                                   (reservation.project_id, labels, tokens, time.time()))
            connection.execute("COMMIT")
        except BaseException:
            connection.rollback()
            raise
        finally:
            connection.close()

    def spent(self) -> dict:
        """Return what was spent and is reserved, over all projects."""
        connection = self._connect()
        try:
            labels, tokens = connection.execute(
                "SELECT COALESCE(SUM(labels), 0), COALESCE(SUM(tokens), 0) FROM budget_spent").fetchone()
            held_labels, held_tokens = connection.execute(
                "SELECT COALESCE(SUM(labels), 0), COALESCE(SUM(tokens), 0) FROM budget_reservations").fetchone()
        finally:
            connection.close()
        return {"labels": labels, "tokens": tokens, "usd": tokens * self.settings.price_per_1k_tokens / 1000,
                "reserved_labels": held_labels, "reserved_tokens": held_tokens}

    def _committed(self, connection: sqlite3.Connection) -> tuple[int, int]:
        row = connection.execute(
            "SELECT (SELECT COALESCE(SUM(labels), 0) FROM budget_spent) "
            "+ (SELECT COALESCE(SUM(labels), 0) FROM budget_reservations), "
            "(SELECT COALESCE(SUM(tokens), 0) FROM budget_spent) "
            "+ (SELECT COALESCE(SUM(tokens), 0) FROM budget_reservations)").fetchone()
        return row[0], row[1]

    def _expire_stale(self, connection: sqlite3.Connection) -> None:
        cutoff = time.time() - self.stale_after
        stale = connection.execute("SELECT reservation_id, project_id, labels, tokens FROM budget_reservations "
                                   "WHERE created_at < ?", (cutoff,)).fetchall()
        for reservation_id, project_id, labels, tokens in stale:
            logger.warning("project=%s teacher reservation %s was never settled; counting %s labels and %s tokens "
                           "as spent", project_id, reservation_id, labels, tokens)
            connection.execute("DELETE FROM budget_reservations WHERE reservation_id = ?", (reservation_id,))
            connection.execute("INSERT INTO budget_spent VALUES (?, ?, ?, ?)", (project_id, labels, tokens, time.time()))

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        connection.execute("PRAGMA busy_timeout = 30000")
        return connection


def token_bound(settings, text: str | None, block, examples) -> int:
    """Return an upper bound of the tokens one teacher call for `text` can be billed.

    Byte-level BPE tokenizers never make a token of less than one byte of UTF-8, so the prompt's
    byte length (with the answer schema and per-message overhead) bounds its tokens. The answer
    is capped by the ``max_tokens`` the teacher sends.
    """
    sent = prompts.truncate_text(text or "", settings.teacher_max_text_tokens)
    if settings.teacher_mode == "chat":
        prompt = prompts.chat_prompt(sent, block, examples)
        parts = [message["content"] for message in prompt.messages]
        parts.append(json.dumps(prompts.answer_schema(block)))
    else:
        parts = [prompts.completion_prompt(sent, block, examples).text]
    prompt_bytes = sum(len(part.encode("utf-8")) for part in parts)
    return prompt_bytes + MESSAGE_OVERHEAD_TOKENS * (len(parts) + 1) + prompts.max_answer_tokens(block)


def billed(answers) -> tuple[int, int]:
    """Return `(labels, tokens)` the server billed for `answers`; cached answers and failed requests cost nothing."""
    fresh = [answer for answer in answers
             if not answer.cached and (answer.raw or answer.prompt_tokens or answer.completion_tokens)]
    return len(fresh), sum(answer.prompt_tokens + answer.completion_tokens for answer in fresh)


def label_within_budget(teacher, budget: TeacherBudget, project_id: int, items, block, examples):
    """Ask the teacher about `items` in chunks, each reserved before it is sent.

    When the remaining budget is held by calls of other workers, this waits for them to settle
    (their reservations usually shrink to the real usage) before it gives up.

    Returns ``(answers, unsent)``: answers for the items the budget allowed, in item order, and the
    number of items left without an answer because the budget ran out.
    """
    if not budget.limited:
        return teacher.label(items, block, examples), 0
    settings = teacher.settings
    chunk = max(1, settings.teacher_concurrency)
    patience = settings.teacher_timeout * (settings.teacher_max_retries + 1) * 2 + 5
    answers, pending = [], list(items)
    waited_since = None
    while pending:
        batch = pending[:chunk]
        reservation = budget.reserve(project_id, [token_bound(settings, text, block, examples) for _, text in batch])
        if reservation.granted == 0:
            reserved_by_others = budget.spent()["reserved_labels"]
            waited_since = waited_since or time.monotonic()
            if not reserved_by_others or time.monotonic() - waited_since > patience:
                break
            time.sleep(WAIT_S)
            continue
        waited_since = None
        try:
            got = teacher.label(batch[:reservation.granted], block, examples)
        except BaseException:
            # The calls may have been billed, so a failed batch keeps its whole reservation.
            budget.settle(reservation, reservation.labels, reservation.tokens)
            raise
        budget.settle(reservation, *billed(got))
        answers.extend(got)
        pending = pending[reservation.granted:]
    return answers, len(pending)
