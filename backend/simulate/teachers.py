"""Simulated teachers: gold labels, gold labels with seeded errors, or the backend's LLM teacher.

A teacher is built from the pool only and labels pool positions, so the held-out test set can
never reach it. Every teacher records the positions it was asked (`asked`), which the tests use.
"""

import logging
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)


class SimTeacher:
    """Base class: labels pool positions and records every position asked."""

    name = "teacher"

    def __init__(self, pool_texts: Sequence[str]) -> None:
        self.pool_texts = pool_texts
        self.asked: list[int] = []

    def label(self, positions) -> list[Optional[str]]:
        """Return one label per pool position, or None where the teacher gave no valid answer."""
        positions = [int(p) for p in positions]
        self.asked.extend(positions)
        return self._answer(positions)

    def _answer(self, positions: list[int]) -> list[Optional[str]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release resources (the LLM client); a no-op for simulated teachers."""


class GoldTeacher(SimTeacher):
    """Answers with the corpus's own labels."""

    name = "gold"

    def __init__(self, pool_texts, pool_labels) -> None:
        super().__init__(pool_texts)
        self.pool_labels = list(pool_labels)

    def _answer(self, positions):
        return [self.pool_labels[p] for p in positions]


class NoisyTeacher(GoldTeacher):
    """Answers with the corpus's labels, except a seeded fraction `rate` of the pool gets a wrong
    label drawn uniformly from the other classes. Which items are wrong is fixed per seed, so
    asking again gives the same answer."""

    def __init__(self, pool_texts, pool_labels, classes, rate: float, seed: int) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"noisy teacher rate must be in [0, 1]; got {rate!r}. Write it as noisy:0.1.")
        if len(classes) < 2:
            raise ValueError(f"a noisy teacher needs at least 2 classes; got {list(classes)}.")
        super().__init__(pool_texts, pool_labels)
        self.name = f"noisy:{rate:g}"
        self.rate = rate
        rng = np.random.default_rng([seed, 7919])
        index = {label: i for i, label in enumerate(classes)}
        gold = np.array([index[label] for label in self.pool_labels])
        wrong = rng.random(gold.size) < rate
        shifted = (gold + rng.integers(1, len(classes), gold.size)) % len(classes)
        self.answers = [classes[i] for i in np.where(wrong, shifted, gold)]
        self.is_wrong = wrong

    def _answer(self, positions):
        return [self.answers[p] for p in positions]


class LLMTeacher(SimTeacher):
    """The backend's `Teacher` (OpenAI-compatible server, settings from the environment), with its
    sqlite `AnswerCache`, so a rerun asks the server nothing."""

    name = "llm"

    def __init__(self, pool_texts, classes, cache_path, examples=(), settings=None) -> None:
        from backend.config import Settings
        from backend.labels import ChoicesBlock
        from backend.teacher import AnswerCache, Teacher

        super().__init__(pool_texts)
        settings = settings or Settings.from_env()
        if not settings.openai_base_url:
            raise ValueError("--teacher llm needs OPENAI_BASE_URL (and MRARU_TEACHER_MODEL); set them, "
                             "e.g. OPENAI_BASE_URL=http://127.0.0.1:8000/v1, or use --teacher gold.")
        self.block = ChoicesBlock(from_name="label", to_name="text", value_key="text",
                                  choices=tuple(classes), multiple=False)
        self.examples = list(examples)
        self.cache = AnswerCache(Path(cache_path))
        self.teacher = Teacher(settings, self.cache)
        self.n_invalid = 0

    def _answer(self, positions):
        answers = self.teacher.label([(p, self.pool_texts[p]) for p in positions], self.block, self.examples)
        self.n_invalid += sum(not answer.valid for answer in answers)
        return [answer.labels[0] if answer.valid and answer.labels else None for answer in answers]

    def close(self) -> None:
        self.teacher.close()


def make_teacher(spec: str, pool_texts, pool_labels, classes, *, seed: int, cache_path=None,
                 examples=()) -> SimTeacher:
    """Build a teacher from "gold", "noisy:<rate>" or "llm"."""
    if spec == "gold":
        return GoldTeacher(pool_texts, pool_labels)
    if spec.startswith("noisy:"):
        try:
            rate = float(spec.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"teacher {spec!r}: the rate after 'noisy:' must be a number, e.g. noisy:0.1.") from None
        return NoisyTeacher(pool_texts, pool_labels, classes, rate, seed)
    if spec == "llm":
        if cache_path is None:
            raise ValueError("--teacher llm needs a cache path for its answers.")
        return LLMTeacher(pool_texts, classes, cache_path, examples)
    raise ValueError(f"unknown teacher {spec!r}; use gold, noisy:<rate> (e.g. noisy:0.1) or llm.")
