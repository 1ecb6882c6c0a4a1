"""Selection cost: student evaluations and wall time of one M-RARU batch versus exhaustive ranking.

Pools of 10k, 100k and 1M items are made by repeating a corpus's pool. The student is trained on
`TRAIN_LABELS` gold labels. Both sides call `backend.sampling.select` with the same score
function, so one evaluation costs the same on both sides; for the embedding student it includes
encoding the text. Exhaustive ranking above ``--exhaustive-up-to`` is not run: its time is
extrapolated from the per-item time of the largest pool that was measured, and the table says so.
"""

import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from backend.sampling import select
from backend.sampling.uncertainty import UNCERTAINTY_MEASURES
from backend.simulate.corpora import Split, load_corpus, split_corpus
from backend.simulate.fitting import make_fitter

logger = logging.getLogger(__name__)

TRAIN_LABELS = 1000
BATCH = 100
MRARU_REPEATS = 3


class CountingScore:
    """``score(positions) -> u`` over a list of texts, counting the items it evaluates."""

    def __init__(self, model, texts, measure: str) -> None:
        self.model = model
        self.texts = texts
        self.measure = UNCERTAINTY_MEASURES[measure]
        self.n_evaluated = 0

    def __call__(self, positions) -> np.ndarray:
        self.n_evaluated += len(positions)
        return self.measure(self.model.predict_proba([self.texts[i] for i in positions]))


def run_selection_cost(args, out: Path) -> dict:
    """Measure one batch of BATCH at each pool size; write JSON and a markdown table to `out`."""
    dataset = args.dataset.split(",")[0].partition("@")[0]
    split = split_corpus(load_corpus(dataset), test_fraction=args.test_fraction, split_seed=args.split_seed)
    fit = make_fitter(args.student, args.features)
    model = fit(split.pool_texts[:TRAIN_LABELS], split.pool_labels[:TRAIN_LABELS], 0)
    sizes = [int(size) for size in args.pool_sizes.split(",")]

    rows, per_item = [], None
    for size in sizes:
        texts = (split.pool_texts * math.ceil(size / len(split.pool_texts)))[:size]
        mraru = []
        for repeat in range(MRARU_REPEATS):
            score = CountingScore(model, texts, args.uncertainty)
            tick = time.perf_counter()
            selection = select("mraru", score, size, BATCH, np.random.default_rng([repeat, size]),
                               eps=args.eps, tau=args.tau)
            mraru.append((time.perf_counter() - tick, score.n_evaluated, selection.fallback_filled))

        row = {"pool": size, "student": args.student, "features": args.features, "k": BATCH,
               "mraru_evaluations": float(np.median([m[1] for m in mraru])),
               "mraru_s": round(float(np.median([m[0] for m in mraru])), 3),
               "mraru_fallback": int(max(m[2] for m in mraru))}
        if size <= args.exhaustive_up_to:
            score = CountingScore(model, texts, args.uncertainty)
            tick = time.perf_counter()
            select(args.uncertainty, score, size, BATCH, np.random.default_rng(0))
            seconds = time.perf_counter() - tick
            per_item = seconds / size
            row.update(exhaustive_evaluations=score.n_evaluated, exhaustive_s=round(seconds, 3),
                       exhaustive_measured=True)
        else:
            row.update(exhaustive_evaluations=size, exhaustive_s=round(per_item * size, 3), exhaustive_measured=False)

        row["evaluation_ratio"] = round(row["exhaustive_evaluations"] / row["mraru_evaluations"], 1)
        row["time_ratio"] = round(row["exhaustive_s"] / row["mraru_s"], 1)
        logger.info("selection cost pool=%s: %s", size, row)
        rows.append(row)

    table = markdown(rows, split.name, args)
    tag = f"{split.name}-{args.student}-{args.features}"
    (out / f"selection-cost-{tag}.json").write_text(json.dumps(rows, indent=1))
    (out / f"selection-cost-{tag}.md").write_text(table)
    return {"rows": rows, "markdown": table}


def markdown(rows: list[dict], corpus: str, args) -> str:
    """Render the selection-cost rows as a markdown table."""
    lines = [f"**Selection cost** ({corpus} repeated, student {args.student}/{args.features} trained on "
             f"{TRAIN_LABELS} labels, batch {BATCH}, M-RARU eps={args.eps:g} tau={args.tau:g}, "
             f"median of {MRARU_REPEATS} M-RARU batches)", "",
             "| pool | M-RARU evaluations | exhaustive evaluations | ratio | M-RARU s | exhaustive s | ratio |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        star = "" if row["exhaustive_measured"] else " (extrapolated)"
        lines.append(f"| {row['pool']:,} | {row['mraru_evaluations']:,.0f} | {row['exhaustive_evaluations']:,} | "
                     f"{row['evaluation_ratio']:,.0f}x | {row['mraru_s']:.2f} | {row['exhaustive_s']:,.1f}{star} | "
                     f"{row['time_ratio']:,.0f}x |")
    return "\n".join(lines) + "\n"


def run_student_cost(args, out: Path) -> dict:
    """Fit every student on TRAIN_LABELS gold labels and time fit and predict on the test set."""
    from backend.students import STUDENTS

    dataset = args.dataset.split(",")[0].partition("@")[0]
    split = split_corpus(load_corpus(dataset), test_fraction=args.test_fraction, split_seed=args.split_seed)
    # Only the texts used here: the training labels and at most TRAIN_LABELS test texts.
    split = Split(split.name, split.classes, split.pool_texts[:TRAIN_LABELS], split.pool_labels[:TRAIN_LABELS],
                  split.test_texts[:TRAIN_LABELS], split.test_labels[:TRAIN_LABELS])
    encode_s = None
    if args.features == "embeddings":
        tick = time.perf_counter()
        make_fitter("lr", "embeddings", corpus=split)
        encode_s = time.perf_counter() - tick

    rows = []
    for student in STUDENTS:
        fit = make_fitter(student, args.features, corpus=split if args.features == "embeddings" else None)
        tick = time.perf_counter()
        model = fit(split.pool_texts[:TRAIN_LABELS], split.pool_labels[:TRAIN_LABELS], 0)
        fit_s = time.perf_counter() - tick

        tick = time.perf_counter()
        predicted = model.predict(split.test_texts)
        predict_s = time.perf_counter() - tick
        accuracy = float(np.mean([p == t for p, t in zip(predicted, split.test_labels)]))
        rows.append({"student": student, "features": args.features, "fit_s": round(fit_s, 3),
                     "predict_ms_per_1000": round(predict_s * 1000.0 / len(split.test_texts) * 1000.0, 1),
                     "accuracy": round(accuracy, 4)})
        logger.info("student cost %s", rows[-1])

    lines = [f"**Student cost** ({split.name}, {TRAIN_LABELS} gold labels, {args.features} features, "
             f"predict timed on the {len(split.test_texts)} test texts)", "",
             "| student | fit s | predict ms per 1,000 texts | test accuracy |", "|---|---|---|---|"]
    lines += [f"| {r['student']} | {r['fit_s']:.2f} | {r['predict_ms_per_1000']:.0f} | {r['accuracy']:.3f} |" for r in rows]
    if encode_s is not None:
        lines += ["", f"Fit and predict exclude encoding: the {2 * TRAIN_LABELS} texts were encoded once in "
                      f"{encode_s:.0f} s (cached vectors; a cold cache includes loading the model)."]
    table = "\n".join(lines) + "\n"
    tag = f"{split.name}-{args.features}"
    (out / f"student-cost-{tag}.json").write_text(json.dumps(rows, indent=1))
    (out / f"student-cost-{tag}.md").write_text(table)
    return {"rows": rows, "markdown": table}
