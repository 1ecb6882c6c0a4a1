"""Learning-curve plots (PNG). matplotlib is an optional extra: ``pip install 'mraru-backend[simulate]'``."""

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)


def plot_curves(runs: list[dict], path: Path, title: str, reference: dict | None = None) -> bool:
    """Plot accuracy and macro-F1 against teacher labels: one mean curve per strategy with a
    band from the lowest to the highest seed. Return False (and log why) without matplotlib."""
    plt = _pyplot(path)
    if plt is None:
        return False
    by_label: dict[str, list[dict]] = {}
    for run in runs:
        by_label.setdefault(run["config"]["label"], []).append(run)
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharex=True)
    for metric, axis in zip(("accuracy", "macro_f1"), axes):
        for label, group in sorted(by_label.items()):
            x, ys = _aligned(group, metric)
            mean = ys.mean(axis=0)
            line, = axis.plot(x, mean, label=label, linewidth=1.6)
            axis.fill_between(x, ys.min(axis=0), ys.max(axis=0), color=line.get_color(), alpha=0.18, linewidth=0)
        if reference is not None:
            axis.axhline(reference[metric], color="black", linestyle=":", linewidth=1, label="full pool")
            if metric == "accuracy":
                axis.axhline(0.95 * reference[metric], color="grey", linestyle="--", linewidth=0.8,
                             label="95% of full pool")
        axis.set_xlabel("teacher labels")
        axis.set_ylabel(metric.replace("_", "-"))
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    _save(plt, figure, path, title, dpi=110)
    return True


def plot_grid(rows: list[dict], path: Path, title: str) -> bool:
    """Plot the AUC of M-RARU, random and the best greedy baseline for every student, one panel per
    corpus, with one-sd error bars. `rows` come from `backend.simulate.report.grid_row`. Return
    False (and log why) without matplotlib."""
    plt = _pyplot(path)
    if plt is None:
        return False

    corpora = list(dict.fromkeys(row["corpus"] for row in rows))
    figure, axes = plt.subplots(len(corpora), 1, figsize=(11, 2.6 * len(corpora)), squeeze=False)
    width = 0.27
    for axis, corpus in zip(axes[:, 0], corpora):
        chosen = [row for row in rows if row["corpus"] == corpus]
        x = np.arange(len(chosen))

        for offset, (key, name) in enumerate((("mraru", "M-RARU"), ("random", "random"),
                                              ("best_greedy", "best greedy"))):
            means = [row[key]["auc"]["mean"] if row[key] else np.nan for row in chosen]
            sds = [row[key]["auc"]["sd"] if row[key] else 0.0 for row in chosen]
            axis.bar(x + (offset - 1) * width, means, width, yerr=sds, label=name, capsize=2)

        plotted_aucs = [row[key]["auc"]["mean"] for row in chosen for key in ("mraru", "random", "best_greedy") if row[key]]
        axis.set_ylim(max(0.0, min(plotted_aucs) - 0.05), min(1.0, max(plotted_aucs) + 0.03))

        # AUCs over different budgets are not comparable, so mixed budgets are named on each bar group.
        budgets = sorted({row["budget"] for row in chosen})
        names = [f"{row['student']}/{row['features']}" for row in chosen]
        if len(budgets) > 1:
            names = [f"{name}\n{row['budget']} labels" for name, row in zip(names, chosen)]
        axis.set_xticks(x)
        axis.set_xticklabels(names, fontsize=8)
        axis.set_ylabel("AUC accuracy")
        budget_text = f"budget {budgets[0]}" if len(budgets) == 1 else f"budgets {budgets[0]}-{budgets[-1]}"
        axis.set_title(f"{corpus} ({budget_text}, {chosen[0]['seeds']} seeds)", fontsize=9)
        axis.grid(axis="y", alpha=0.3)

    # The legend sits in the figure's top-right corner, away from the bars.
    figure.legend(*axes[0, 0].get_legend_handles_labels(), loc="upper right", ncol=3, fontsize=8)
    _save(plt, figure, path, title, dpi=100)
    return True


def _pyplot(path: Path):
    """Return matplotlib.pyplot with a file-only backend, or None (with a warning) when it is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("plot %s skipped: matplotlib is not installed; pip install 'mraru-backend[simulate]'", path)
        return None
    return plt


def _save(plt, figure, path: Path, title: str, dpi: int) -> None:
    """Title, lay out and write `figure` to `path`, then free it."""
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


def _aligned(group: list[dict], metric: str):
    """Label counts shared by every seed of a group, and the metric per seed at those counts."""
    common = set.intersection(*({p["labels"] for p in run["points"]} for run in group))
    x = np.array(sorted(common))
    ys = np.array([[next(p[metric] for p in run["points"] if p["labels"] == n) for n in x] for run in group])
    return x, ys
