"""Summaries of simulated runs: learning-curve area, accuracy at fixed label counts, labels needed
to reach a share of the full-pool accuracy, and the saving against random sampling."""

import csv
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from backend.sampling import GREEDY_STRATEGIES
from backend.simulate.runner import REPORT_POINTS

TARGETS = (0.95, 0.99)
CURVE_COLUMNS = ("corpus", "teacher", "student", "features", "strategy", "seed", "labels", "round",
                 "n_train", "accuracy", "macro_f1")


def curve_auc(points: list[dict], metric: str = "accuracy") -> float:
    """Normalised area under the curve: the trapezoid mean of `metric` over labels spent.

    Parameters
    ----------
    points : list of dict
        Curve points with ``labels`` (strictly increasing) and `metric`.

    Returns
    -------
    float
        In [0, 1]; the value itself for a single point.
    """
    x = np.array([p["labels"] for p in points], dtype=float)
    y = np.array([p[metric] for p in points], dtype=float)
    if x.size == 1:
        return float(y[0])
    return float(np.sum((y[1:] + y[:-1]) / 2.0 * np.diff(x)) / (x[-1] - x[0]))


def labels_to_reach(points: list[dict], target: float, metric: str = "accuracy") -> Optional[int]:
    """First label count whose `metric` is at least `target`, or None if the run never got there."""
    for point in points:
        if point[metric] >= target:
            return int(point["labels"])
    return None


def value_at(points: list[dict], labels: int, metric: str = "accuracy") -> Optional[float]:
    """The metric at exactly `labels`, or None when the curve has no point there."""
    for point in points:
        if point["labels"] == labels:
            return float(point[metric])
    return None


def summarize(runs: list[dict], reference: dict) -> list[dict]:
    """One summary row per strategy label, over the seeds of `runs` (one corpus, one teacher).

    `reference` holds the full-pool accuracy; the labels-needed columns use the first point whose
    accuracy reaches 95% and 99% of it, averaged over seeds (None if any seed never did).
    """
    by_label: dict[str, list[dict]] = {}
    for run in runs:
        by_label.setdefault(run["config"]["label"], []).append(run)
    rows = []
    for label, group in by_label.items():
        aucs = [curve_auc(run["points"]) for run in group]
        f1_aucs = [curve_auc(run["points"], "macro_f1") for run in group]
        row = {"strategy": label, "seeds": len(group), "budget": group[0]["config"]["budget"],
               "auc": _mean_sd(aucs), "auc_f1": _mean_sd(f1_aucs),
               "seconds": round(float(np.mean([run["seconds"] for run in group])), 1),
               "select_seconds": round(float(np.mean([sum(r["select_s"] for r in run["rounds"]) for run in group])), 2),
               "scored_per_round": round(float(np.mean([r["n_scored"] for run in group for r in run["rounds"][1:]]
                                                       or [0])), 1)}
        for n in REPORT_POINTS:
            values = [value_at(run["points"], n) for run in group]
            row[f"acc@{n}"] = _mean_sd(values) if all(v is not None for v in values) else None
        for share in TARGETS:
            needed = [labels_to_reach(run["points"], share * reference["accuracy"]) for run in group]
            row[f"labels@{share:.0%}"] = None if any(n is None for n in needed) else float(np.mean(needed))
        rows.append(row)
    random_row = next((row for row in rows if row["strategy"] == "random"), None)
    for row in rows:
        for share in TARGETS:
            key = f"labels@{share:.0%}"
            row[f"saving@{share:.0%}"] = _saving(row[key], None if random_row is None else random_row[key],
                                                 row["budget"], random_row is not None)
    return rows


def _saving(needed: Optional[float], random_needed: Optional[float], budget: int, have_random: bool):
    """1 - needed / random_needed; a lower bound ">x" when random never reached the target."""
    if not have_random or needed is None:
        return None
    if random_needed is None:
        return f">{1.0 - needed / budget:.0%}"
    return f"{1.0 - needed / random_needed:.0%}"


def _mean_sd(values) -> dict:
    values = np.asarray(values, dtype=float)
    return {"mean": round(float(values.mean()), 4), "sd": round(float(values.std(ddof=1)) if values.size > 1 else 0.0, 4)}


def markdown_table(rows: list[dict], reference: dict, title: str) -> str:
    """Render summary rows as a markdown table with the full-pool reference in the heading."""
    head = ["strategy", "AUC acc", "AUC F1"] + [f"acc@{n}" for n in REPORT_POINTS] + \
           ["labels@95%", "saving@95%", "labels@99%", "saving@99%", "scored/round", "select s/run", "s/run"]
    lines = [f"**{title}**: full pool ({reference['n_train']} teacher labels) accuracy "
             f"{reference['accuracy']:.3f}, macro-F1 {reference['macro_f1']:.3f}; "
             f"{rows[0]['seeds'] if rows else 0} seeds, budget {rows[0]['budget'] if rows else 0}.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row["strategy"], _fmt(row["auc"]), _fmt(row["auc_f1"])]
        cells += [_fmt(row[f"acc@{n}"]) for n in REPORT_POINTS]
        for share in TARGETS:
            needed = row[f"labels@{share:.0%}"]
            cells += [f">{row['budget']}" if needed is None else f"{needed:.0f}", row[f"saving@{share:.0%}"] or "-"]
        cells += [f"{row['scored_per_round']:.0f}", f"{row['select_seconds']:.1f}", f"{row['seconds']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value['mean']:.3f}±{value['sd']:.3f}"


def write_run(run: dict, path: Path) -> None:
    """Write one run's record as JSON and its curve as CSV next to it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CURVE_COLUMNS)
        writer.writerows(curve_rows(run))
    # A later call reuses the JSON, so it is written last, under a temporary name, and then renamed.
    temporary_path = path.with_suffix(".json.partial")
    temporary_path.write_text(json.dumps(run, indent=1))
    os.replace(temporary_path, path.with_suffix(".json"))


def curve_rows(run: dict) -> list[list]:
    """Rows of CURVE_COLUMNS for one run."""
    meta = run["meta"]
    config = run["config"]
    return [[meta["corpus"], meta["teacher"], config["student"], config["features"], config["label"],
             config["seed"], p["labels"], p["round"], p["n_train"], p["accuracy"], p["macro_f1"]]
            for p in run["points"]]


def compare_auc(row: dict, other: dict) -> str:
    """"wins", "ties" or "loses": `row`'s AUC against `other`'s, beyond seed noise or not.

    A difference counts when it exceeds twice its standard error over seeds,
    ``2 * sqrt(sd1**2 / n1 + sd2**2 / n2)`` (about a 95% two-sided test), and at least 0.001.
    """
    diff = row["auc"]["mean"] - other["auc"]["mean"]
    noise = 2.0 * np.sqrt(row["auc"]["sd"] ** 2 / row["seeds"] + other["auc"]["sd"] ** 2 / other["seeds"])
    if abs(diff) <= max(noise, 0.001):
        return "ties"
    return "wins" if diff > 0 else "loses"


def grid_row(summary: dict) -> Optional[dict]:
    """Condense one corpus x student summary to M-RARU, random and the best greedy baseline.

    M-RARU is the first row whose strategy starts with "mraru". The best greedy baseline is the
    least confidence, margin or entropy row with the highest mean AUC. Returns None without an
    M-RARU row.
    """
    rows = summary["rows"]
    mraru = next((row for row in rows if row["strategy"].startswith("mraru")), None)
    if mraru is None:
        return None
    random_row = next((row for row in rows if row["strategy"] == "random"), None)
    greedy = [row for row in rows if row["strategy"] in GREEDY_STRATEGIES]
    best = max(greedy, key=lambda row: row["auc"]["mean"]) if greedy else None
    meta = summary["meta"]
    return {"corpus": meta["corpus"], "teacher": meta["teacher"], "student": meta.get("student"),
            "features": meta.get("features"), "full_pool_accuracy": summary["reference"]["accuracy"],
            "seeds": mraru["seeds"], "budget": mraru["budget"], "mraru": mraru, "random": random_row,
            "best_greedy": best,
            "vs_random": compare_auc(mraru, random_row) if random_row else None,
            "vs_best_greedy": compare_auc(mraru, best) if best else None}


def grid_table(summaries: list[dict]) -> str:
    """Render one markdown line per corpus x student x features: M-RARU, random and the best greedy."""
    head = ["corpus", "student", "full-pool acc", "AUC M-RARU", "AUC random", "AUC best greedy",
            "M-RARU vs random", "M-RARU vs best greedy", "labels@95% M-RARU / random / greedy",
            "saving@95% M-RARU / greedy", "s/run M-RARU / greedy"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for summary in summaries:
        row = grid_row(summary)
        if row is None:
            continue
        mraru, random_row, best = row["mraru"], row["random"], row["best_greedy"]

        def needed(item):
            if item is None:
                return "-"
            value = item["labels@95%"]
            return f">{item['budget']}" if value is None else f"{value:.0f}"

        lines.append("| " + " | ".join([
            f"{row['corpus']} ({row['seeds']} seeds, {row['budget']})", f"{row['student']}/{row['features']}",
            f"{row['full_pool_accuracy']:.3f}", _fmt(mraru["auc"]), _fmt(random_row["auc"]) if random_row else "-",
            f"{_fmt(best['auc'])} ({best['strategy']})" if best else "-",
            row["vs_random"] or "-", row["vs_best_greedy"] or "-",
            f"{needed(mraru)} / {needed(random_row)} / {needed(best)}",
            f"{mraru['saving@95%'] or '-'} / {(best or {}).get('saving@95%') or '-'}",
            f"{mraru['seconds']:.0f} / {best['seconds']:.0f}" if best else f"{mraru['seconds']:.0f} / -",
        ]) + " |")
    if len(lines) == 2:
        lines.append("\nNo rows: each row compares an M-RARU run with random and greedy runs of the same cell, "
                     "and these results contain no M-RARU run. Add mraru to --strategy.")
    return "\n".join(lines) + "\n"
