"""One simulated labelling run: the backend's `select`, students and uncertainty measures in a loop.

Each round mirrors `backend.loop.run_round`: a seed set of `seed_size` while no student exists,
then batches of `batch_size`, drawn by `backend.sampling.select` with a generator seeded by
``[seed, round_no]``; the teacher labels the batch; the student is refitted from scratch with
`backend.students.fit_student` (after `check_trainable`). The curve is measured on the held-out
test set at fixed label counts.
"""

import logging
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from backend.sampling import GREEDY_STRATEGIES, STRATEGIES, select
from backend.sampling.uncertainty import UNCERTAINTY_MEASURES
from backend.simulate.corpora import Split
from backend.simulate.teachers import SimTeacher
from backend.students import NotEnoughDataError, check_trainable

logger = logging.getLogger(__name__)

# Label counts the curve always includes when the run passes them (the summary reads these).
REPORT_POINTS = (100, 200, 500, 1000, 2000)


@dataclass(frozen=True)
class RunConfig:
    """Settings of one run; `seed` drives the rounds' generators and the student's random_state."""

    strategy: str = "mraru"
    student: str = "svm"
    features: str = "tfidf"
    seed_size: int = 20
    batch_size: int = 20
    budget: int = 1000
    seed: int = 0
    eps: float = 0.05
    tau: float = 0.25
    uncertainty: str = "margin"
    power: float = 1.0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; expected one of {list(STRATEGIES)}.")
        if self.uncertainty not in UNCERTAINTY_MEASURES:
            raise ValueError(f"unknown uncertainty {self.uncertainty!r}; expected one of {sorted(UNCERTAINTY_MEASURES)}.")
        for name in ("seed_size", "batch_size", "budget"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")

    @property
    def measure(self) -> str:
        """The uncertainty measure `select` gets, chosen as `backend.loop.run_round` does."""
        return self.strategy if self.strategy in GREEDY_STRATEGIES else self.uncertainty

    @property
    def label(self) -> str:
        """Short name of the strategy and its parameters, used for curves and tables."""
        if self.strategy == "mraru":
            return f"mraru(eps={self.eps:g},tau={self.tau:g})"
        if self.strategy == "epsilon_uncertainty":
            return f"epsilon_uncertainty(eps={self.eps:g})"
        if self.strategy == "power":
            return f"power(beta={self.power:g})"
        return self.strategy


def eval_points(budget: int) -> list[int]:
    """Label counts where the curve is measured (at the first round that reaches each): every 50
    up to 200, every 100 up to 1000, then every 250; the budget itself is always measured."""
    points = set(range(50, min(budget, 200) + 1, 50)) | set(range(300, min(budget, 1000) + 1, 100))
    return sorted(points | set(range(1250, budget + 1, 250)) | {budget})


def run_simulation(split: Split, teacher: SimTeacher, config: RunConfig,
                   fit: Callable, progress: Optional[Callable[[int], None]] = None) -> dict:
    """Run one labelling simulation and return its record (JSON-safe).

    Parameters
    ----------
    split : Split
        Pool and test set; only pool positions are passed to `teacher`.
    teacher : SimTeacher
        Labels pool positions; None answers are paid for but not trained on.
    config : RunConfig
    fit : callable
        ``fit(texts, labels, random_state) -> estimator`` with `predict_proba`, `predict` and
        `classes_`; it raises `NotEnoughDataError` while the labels cannot train it (see
        `backend.simulate.fitting.make_fitter`).
    progress : callable, optional
        Called with the labels spent after each round.

    Returns
    -------
    dict
        ``config``, ``points`` (labels, accuracy, macro_f1, n_train, round), ``rounds``
        (selection statistics per round) and ``seconds``.
    """
    started = time.perf_counter()
    texts = split.pool_texts
    n_pool = len(texts)
    taken = np.zeros(n_pool, dtype=bool)
    train_texts: list[str] = []
    train_labels: list[str] = []
    points, rounds = [], []
    grid = eval_points(config.budget)
    next_point = 0
    model = None
    spent = round_no = 0
    measure_fn = UNCERTAINTY_MEASURES[config.measure]
    needs_model = config.strategy != "random"

    while spent < config.budget and not taken.all():
        round_no += 1
        available = np.flatnonzero(~taken)
        # As in the backend: the seed size until a student can be trained, then the batch size.
        # Random sampling refits only to measure, so ask check_trainable instead of the model.
        has_student = model is not None if needs_model else _trainable(train_labels, config.student)
        k = min(config.batch_size if has_student else config.seed_size, config.budget - spent)
        score = None
        if model is not None:
            def score(positions, model=model, available=available):
                return measure_fn(model.predict_proba([texts[i] for i in available[positions]]))

        rng = np.random.default_rng([config.seed, round_no])
        tick = time.perf_counter()
        selection = select(config.strategy, score, int(available.size), int(k), rng,
                           eps=config.eps, tau=config.tau, power=config.power)
        select_s = time.perf_counter() - tick
        chosen = available[selection.indices]
        answers = teacher.label(chosen)
        taken[chosen] = True
        spent += int(chosen.size)
        for position, answer in zip(chosen, answers):
            if answer is not None:
                train_texts.append(texts[position])
                train_labels.append(answer)

        measure_now = next_point < len(grid) and (spent >= grid[next_point] or taken.all())
        fit_s = 0.0
        if needs_model or measure_now:
            tick = time.perf_counter()
            model = _fit_or_none(fit, train_texts, train_labels, config)
            fit_s = time.perf_counter() - tick
        rounds.append({"round": round_no, "k": int(k), "n_pool": int(available.size), "n_scored": selection.n_scored,
                       "acceptance_rate": round(selection.acceptance_rate, 4), "passes": selection.passes,
                       "fallback_filled": selection.fallback_filled, "select_s": round(select_s, 4),
                       "fit_s": round(fit_s, 4)})
        if measure_now:
            while next_point < len(grid) and grid[next_point] <= spent:
                next_point += 1
            points.append({"labels": spent, "round": round_no, "n_train": len(train_labels),
                           **evaluate(model, train_labels, split)})
        if progress is not None:
            progress(spent)

    logger.debug("run %s seed=%s: %s labels in %s rounds", config.label, config.seed, spent, round_no)
    return {"config": {**asdict(config), "label": config.label}, "points": points, "rounds": rounds,
            "labels_spent": spent, "seconds": round(time.perf_counter() - started, 3)}


def _trainable(labels: list[str], student: str) -> bool:
    """True when `check_trainable` accepts the labels for `student`."""
    try:
        # The transformer student needs what logistic regression needs: 2 classes, 1 example each.
        check_trainable(labels, "lr" if student == "transformer" else student)
    except NotEnoughDataError:
        return False
    return True


def _fit_or_none(fit: Callable, texts: list[str], labels: list[str], config: RunConfig):
    """Fit the student, or return None while the labels cannot train it yet."""
    try:
        return fit(texts, labels, config.seed)
    except NotEnoughDataError as error:
        logger.debug("seed=%s: no student yet: %s", config.seed, error)
        return None


def evaluate(model, train_labels: list[str], split: Split) -> dict:
    """Accuracy and macro-F1 on the test set; without a student, predict the most common label."""
    if model is None:
        fallback = max(set(train_labels), key=train_labels.count) if train_labels else split.classes[0]
        predicted = [fallback] * len(split.test_labels)
    else:
        predicted = list(model.predict(split.test_texts))
    return {
        "accuracy": round(float(accuracy_score(split.test_labels, predicted)), 5),
        "macro_f1": round(float(f1_score(split.test_labels, predicted, average="macro",
                                         labels=list(split.classes), zero_division=0)), 5),
    }


def full_pool_reference(split: Split, teacher_labels: list[Optional[str]], fit: Callable, seed: int = 0) -> dict:
    """Fit the student on the whole pool with the teacher's labels and measure it on the test set."""
    keep = [i for i, label in enumerate(teacher_labels) if label is not None]
    tick = time.perf_counter()
    model = fit([split.pool_texts[i] for i in keep], [teacher_labels[i] for i in keep], seed)
    fit_s = time.perf_counter() - tick
    return {"n_train": len(keep), "fit_s": round(fit_s, 3), **evaluate(model, [], split)}
