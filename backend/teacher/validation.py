"""Turn a teacher's raw answer into exact label strings, or reject it.

Matching is deliberately strict: an answer matches a choice only when the two are equal after
folding case and trimming surrounding whitespace and punctuation. Near misses ("Positve",
"positive sentiment", a second line of explanation) are invalid; nothing is coerced to the
nearest label.
"""

import json
import re
import string

from backend.labels import ChoicesBlock

_TRIM = string.whitespace + string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2026"
_FENCE = re.compile(r"^```(?:json)?[ \t]*\n(.*)\n```$", re.DOTALL)
_RAW_PREVIEW = 200


class InvalidAnswerError(ValueError):
    """A teacher answer names no label, a label outside the set, or is malformed.

    The message names the task id (when known), the raw answer and the label set.
    """


def validate_answer(raw: str, block: ChoicesBlock, task_id: int | None = None) -> tuple[str, ...]:
    """Return the labels a raw answer names, as exact choice strings in config order.

    Parameters
    ----------
    raw : str
        The completion text: plain text ("positive", "a, b") or JSON (``{"label": "a"}``,
        ``{"labels": ["a", "b"]}``, ``["a"]`` or ``"a"``).
    block : ChoicesBlock
        The label set; ``block.multiple`` allows more than one label.
    task_id : int, optional
        Named in the error message.

    Returns
    -------
    labels : tuple of str
        One label for single-choice blocks, one or more (no duplicates) for multiple-choice ones.

    Raises
    ------
    InvalidAnswerError
        If the answer is empty, malformed, multi-line plain text, names an unknown label, or
        names several labels for a single-choice block.
    """
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        raise _invalid(task_id, raw, block, "the answer is empty")
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    if text[0] in "{[" or (text[0] == '"' and text[-1] == '"' and len(text) > 1):
        candidates = _json_candidates(text, raw, block, task_id)
    else:
        candidates = _text_candidates(text, raw, block, task_id)
    return _match(candidates, raw, block, task_id)


def _json_candidates(text: str, raw: str, block: ChoicesBlock, task_id: int | None) -> list[str]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _invalid(task_id, raw, block, f"the answer is not valid JSON ({exc.msg})") from None
    if isinstance(value, dict):
        keys = set(value)
        if keys == {"label"}:
            value = value["label"]
        elif keys == {"labels"}:
            value = value["labels"]
        else:
            raise _invalid(
                task_id, raw, block, f'expected one key, "label" or "labels"; got keys {sorted(keys)}'
            )
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise _invalid(task_id, raw, block, "expected a label string or a list of label strings")
    return value


def _text_candidates(text: str, raw: str, block: ChoicesBlock, task_id: int | None) -> list[str]:
    if "\n" in text or "\r" in text:
        raise _invalid(task_id, raw, block, "plain-text answers must be a single line")
    if block.multiple:
        exact = _lookup(text, block.choices)
        if exact is not None:
            return [text]
        return text.split(",")
    return [text]


def _match(candidates: list[str], raw: str, block: ChoicesBlock, task_id: int | None) -> tuple[str, ...]:
    if not candidates:
        raise _invalid(task_id, raw, block, "the answer names no label")
    found = []
    for candidate in candidates:
        choice = _lookup(candidate, block.choices)
        if choice is None:
            raise _invalid(task_id, raw, block, f"{candidate.strip()!r} is not one of the labels")
        if choice not in found:
            found.append(choice)
    if len(found) > 1 and not block.multiple:
        raise _invalid(task_id, raw, block, f"{len(found)} labels given where exactly one is allowed")
    order = {choice: position for position, choice in enumerate(block.choices)}
    return tuple(sorted(found, key=order.__getitem__))


def _lookup(candidate: str, choices: tuple[str, ...]) -> str | None:
    """Return the choice equal to `candidate`: exactly, then up to case, then up to punctuation.

    Each step must match one choice only; an ambiguous answer matches nothing.
    """
    stripped = candidate.strip()
    for fold in (lambda value: value.strip(), lambda value: value.strip().casefold(), _normalise):
        key = fold(stripped)
        if not key:
            return None
        matches = [choice for choice in choices if fold(choice) == key]
        if matches:
            return matches[0] if len(matches) == 1 else None
    return None


def _normalise(value: str) -> str:
    return value.strip(_TRIM).casefold()


def _invalid(task_id: int | None, raw: object, block: ChoicesBlock, reason: str) -> InvalidAnswerError:
    preview = raw if isinstance(raw, str) else repr(raw)
    if len(preview) > _RAW_PREVIEW:
        preview = preview[:_RAW_PREVIEW] + "..."
    prefix = f"task {task_id}: " if task_id is not None else ""
    kind = "one or more of" if block.multiple else "exactly one of"
    return InvalidAnswerError(
        f"{prefix}teacher answer {preview!r} is invalid: {reason}; expected {kind} {list(block.choices)}"
    )
