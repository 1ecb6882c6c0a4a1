"""The LLM teacher: requests labels from an OpenAI-compatible server, one request per task text.

Retries belong to the openai client (``max_retries`` from settings): it retries connection
errors, timeouts, 408, 409, 429 and 5xx with exponential backoff and honours ``Retry-After``.
Nothing here retries on top of it. Authentication, permission and not-found answers are the
user's configuration and raise `TeacherConfigError` once for the batch; other failures after
retries become invalid answers for the items concerned and are not cached, so they are asked
again next round.
"""

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from urllib.parse import urlsplit

import openai

from backend.labels import ChoicesBlock
from backend.teacher import prompts
from backend.teacher.cache import AnswerCache, CachedAnswer
from backend.teacher.validation import InvalidAnswerError, validate_answer

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
EXAMPLE_TOKEN_SHARE = 4  # few-shot examples get a quarter of the per-text token budget
_CONSTRAINT_WORDS = ("response_format", "json_schema", "grammar", "guided", "unrecognized", "extra")


class TeacherConfigError(RuntimeError):
    """The teacher cannot work with this configuration (key, model or URL); the message names which."""


@dataclass(frozen=True)
class TeacherAnswer:
    """The teacher's answer for one task; `labels` is empty unless `valid`."""

    task_id: int
    labels: tuple[str, ...]
    valid: bool
    raw: str
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    cached: bool


class _Failure(Exception):
    """A transport or server failure after the client's retries; never cached."""


class Teacher:
    """Labels texts with an OpenAI-compatible model, through a shared answer cache.

    Parameters
    ----------
    settings : backend.config.Settings
        Reads ``openai_base_url``, ``openai_api_key`` and the ``teacher_*`` fields.
    cache : AnswerCache
        Where every model answer is stored before it is returned.
    """

    def __init__(self, settings, cache: AnswerCache) -> None:
        self.settings = settings
        self.cache = cache
        self.base_url = _check_base_url(settings.openai_base_url)
        self.client = openai.OpenAI(
            base_url=self.base_url,
            api_key=settings.openai_api_key or "not-needed",
            timeout=openai.Timeout(settings.teacher_timeout, connect=min(CONNECT_TIMEOUT_S, settings.teacher_timeout)),
            max_retries=settings.teacher_max_retries,
        )
        self._variants = prompts.constraint_variants(settings.teacher_mode, settings.teacher_constraint)
        self._variant = 0
        self._lock = threading.Lock()

    def label(self, items, block: ChoicesBlock, examples=()) -> list[TeacherAnswer]:
        """Return one answer per ``(task_id, text)`` item, in item order.

        Cached answers are returned without an HTTP call. A bad answer or a failed request gives
        an invalid `TeacherAnswer` with `error` set; it never raises for a single item.

        Raises
        ------
        TeacherConfigError
            If the server rejects the key (401/403) or does not know the model or path (404).
        """
        started = time.monotonic()
        examples = self._usable_examples(examples, block)
        answers: list[TeacherAnswer | None] = [None] * len(items)
        todo = []
        for index, (task_id, text) in enumerate(items):
            if not isinstance(text, str) or not text.strip():
                answers[index] = _failed(task_id, "the task text is empty; nothing was sent")
                continue
            sent = prompts.truncate_text(text, self.settings.teacher_max_text_tokens)
            prompt = self._prompt(sent, block, examples)
            key = (self.settings.teacher_model, self._prompt_hash(prompt), prompts.text_hash(sent))
            hit = self.cache.get(*key)
            if hit is not None:
                answers[index] = _from_cache(task_id, hit)
            else:
                todo.append((index, task_id, prompt, key))
        if todo:
            self._ask_all(todo, block, answers)
        logger.info(
            "teacher model=%s: %d items, %d cached, %d asked, %d invalid in %.1fs",
            self.settings.teacher_model, len(items), sum(a.cached for a in answers), len(todo),
            sum(not a.valid for a in answers), time.monotonic() - started,
        )
        return answers

    @staticmethod
    def usage_of(answers) -> dict:
        """Sum token usage over answers; cached answers count as ``cached`` and cost nothing now."""
        fresh = [answer for answer in answers if not answer.cached]
        return {
            "prompt_tokens": sum(answer.prompt_tokens for answer in fresh),
            "completion_tokens": sum(answer.completion_tokens for answer in fresh),
            "calls": len(fresh),
            "cached": len(answers) - len(fresh),
            "invalid": sum(not answer.valid for answer in answers),
        }

    def close(self) -> None:
        self.client.close()

    def _ask_all(self, todo, block: ChoicesBlock, answers: list) -> None:
        stop = threading.Event()
        unreachable: list[str] = []
        workers = min(self.settings.teacher_concurrency, len(todo))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="teacher")
        futures = {
            pool.submit(self._ask, task_id, prompt, key, block, stop, unreachable): index
            for index, task_id, prompt, key in todo
        }
        try:
            for future in as_completed(futures):
                answers[futures[future]] = future.result()
        except TeacherConfigError:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _ask(self, task_id, prompt, key, block, stop, unreachable) -> TeacherAnswer:
        if stop.is_set():
            return _failed(task_id, "not sent: the batch was stopped by a configuration error")
        if unreachable:
            return _failed(task_id, f"not sent: the teacher at {self.base_url} is unreachable ({unreachable[0]})")
        try:
            raw, usage = self._complete(prompt, block)
        except TeacherConfigError:
            stop.set()
            raise
        except _Failure as exc:
            logger.warning("task=%s: teacher request failed: %s", task_id, exc)
            return _failed(task_id, str(exc))
        except openai.APIConnectionError as exc:
            message = _describe(exc, self.settings.openai_api_key)
            if not isinstance(exc, openai.APITimeoutError):
                unreachable.append(message)
            logger.warning("task=%s: teacher at %s failed after retries: %s", task_id, self.base_url, message)
            return _failed(task_id, message)
        try:
            labels, error = validate_answer(raw, block, task_id=task_id), None
        except InvalidAnswerError as exc:
            labels, error = (), str(exc)
            logger.info("task=%s: %s", task_id, error)
        stored = CachedAnswer(labels, error is None, raw, error, usage[0], usage[1])
        self.cache.put(*key, stored)
        return TeacherAnswer(task_id, labels, error is None, raw, error, usage[0], usage[1], cached=False)

    def _complete(self, prompt: prompts.Prompt, block: ChoicesBlock) -> tuple[str, tuple[int, int]]:
        """One request (the client retries inside); returns the raw text and token usage."""
        while True:
            with self._lock:
                variant_index = self._variant
            variant = self._variants[variant_index]
            try:
                response = self._send(prompt, block, variant)
            except (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError) as exc:
                raise TeacherConfigError(self._config_message(exc)) from None
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if self._downgrade(variant_index, exc):
                    continue
                raise _Failure(f"the teacher rejected the request: {_describe(exc, self.settings.openai_api_key)}")
            except openai.APIStatusError as exc:
                # llama-cpp-python reports a rejected response_format as a 500, not a 4xx.
                if exc.status_code >= 500 and self._downgrade(variant_index, exc):
                    continue
                raise _Failure(f"the teacher failed after retries: {_describe(exc, self.settings.openai_api_key)}")
            except (ValueError, openai.APIResponseValidationError) as exc:
                raise _Failure(f"the teacher sent a malformed response ({type(exc).__name__}: {exc})")
            return _extract(response)

    def _send(self, prompt: prompts.Prompt, block: ChoicesBlock, variant: str):
        mode = self.settings.teacher_mode
        options = prompts.constraint_options(mode, variant, block)
        common = {"model": self.settings.teacher_model, "temperature": 0.0,
                  "max_tokens": prompts.max_answer_tokens(block)}
        if mode == "chat":
            return self.client.chat.completions.create(messages=list(prompt.messages), **common, **options)
        return self.client.completions.create(prompt=prompt.text, stop=["\n"], **common, **options)

    def _downgrade(self, variant_index: int, exc: openai.APIStatusError) -> bool:
        """Under auto, move past a constraint the server rejects; True when the item should be sent again."""
        message = _describe(exc, self.settings.openai_api_key)
        if not any(word in message.lower() for word in _CONSTRAINT_WORDS):
            return False
        with self._lock:
            if self._variant != variant_index:
                return True
            if variant_index + 1 >= len(self._variants):
                return False
            self._variant = variant_index + 1
        logger.warning(
            "teacher at %s rejected constraint %r (%s); using %r from now on",
            self.base_url, self._variants[variant_index], message, self._variants[variant_index + 1],
        )
        return True

    def _prompt(self, text: str, block: ChoicesBlock, examples) -> prompts.Prompt:
        if self.settings.teacher_mode == "chat":
            return prompts.chat_prompt(text, block, examples)
        return prompts.completion_prompt(text, block, examples)

    def _prompt_hash(self, prompt: prompts.Prompt) -> str:
        return prompts.text_hash(f"{prompt.fingerprint}|{self.settings.teacher_constraint}")

    def _usable_examples(self, examples, block: ChoicesBlock) -> list[tuple[str, tuple[str, ...]]]:
        limit = max(32, self.settings.teacher_max_text_tokens // EXAMPLE_TOKEN_SHARE)
        usable = []
        for text, labels in examples:
            labels = tuple(labels)
            known = labels and all(label in block.choices for label in labels)
            if not known or (len(labels) > 1 and not block.multiple) or not str(text).strip():
                logger.warning("teacher: few-shot example with labels %s skipped; expected %s",
                               list(labels), list(block.choices))
                continue
            usable.append((prompts.truncate_text(str(text), limit), labels))
        return usable

    def _config_message(self, exc: openai.APIStatusError) -> str:
        detail = _describe(exc, self.settings.openai_api_key)
        if exc.status_code in (401, 403):
            fix = "check OPENAI_API_KEY"
        else:
            fix = (f"check MRARU_TEACHER_MODEL={self.settings.teacher_model!r} and that OPENAI_BASE_URL "
                   "is the API root (usually ending in /v1)")
        return f"teacher at {self.base_url} answered {exc.status_code} ({detail}); {fix}"


def _check_base_url(url: str) -> str:
    parts = urlsplit(url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TeacherConfigError(
            f"OPENAI_BASE_URL={url!r} is not an http(s) URL; set it to the server's API root, "
            "e.g. http://127.0.0.1:8000/v1"
        )
    return url.rstrip("/")


def _extract(response) -> tuple[str, tuple[int, int]]:
    try:
        choice = response.choices[0]
        raw = choice.message.content if hasattr(choice, "message") else choice.text
    except (AttributeError, IndexError, TypeError) as exc:
        raise _Failure(f"the teacher sent a response without choices ({type(exc).__name__})") from None
    usage = getattr(response, "usage", None)
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    return raw or "", (prompt_tokens, completion_tokens)


def _describe(exc: Exception, api_key: str) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    if api_key:
        text = text.replace(api_key, "***")
    return text if len(text) <= 300 else text[:300] + "..."


def _failed(task_id: int, error: str) -> TeacherAnswer:
    return TeacherAnswer(task_id, (), False, "", error, 0, 0, cached=False)


def _from_cache(task_id: int, hit: CachedAnswer) -> TeacherAnswer:
    return TeacherAnswer(task_id, hit.labels, hit.valid, hit.raw, hit.error,
                         hit.prompt_tokens, hit.completion_tokens, cached=True)
