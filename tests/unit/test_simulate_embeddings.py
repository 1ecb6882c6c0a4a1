"""The embedding features' cache logic, with a stand-in encoder (the real model is an optional extra)."""

import numpy as np
import pytest

from backend.students import embeddings
from backend.students.embeddings import EmbeddingCache, SentenceEmbeddings, encode, shared_cache


class FakeEncoder:
    """Maps a text to a 4-dim vector from its length; counts the texts it encodes."""

    def __init__(self):
        self.encoded = []

    def encode(self, texts, **options):
        self.encoded.extend(texts)
        return np.array([[len(t), 1.0, 0.0, 2.0] for t in texts], dtype=np.float64)


@pytest.fixture
def fake_model(monkeypatch):
    encoder = FakeEncoder()
    monkeypatch.setitem(embeddings._MODELS, "fake-model", encoder)
    return encoder


def test_encode_reuses_cached_vectors(fake_model, tmp_path):
    cache = EmbeddingCache(tmp_path / "vectors.npz")
    first = encode(["ab", "abcd", "ab"], "fake-model", cache=cache)
    assert fake_model.encoded == ["ab", "abcd"]
    assert first.shape == (3, 4) and first.dtype == np.float32
    again = encode(["abcd", "xyz"], "fake-model", cache=cache)
    assert fake_model.encoded == ["ab", "abcd", "xyz"]
    np.testing.assert_array_equal(again[0], first[1])


def test_embedding_cache_round_trips_through_the_file(fake_model, tmp_path):
    path = tmp_path / "vectors.npz"
    cache = EmbeddingCache(path)
    encode(["one", "three"], "fake-model", cache=cache)
    cache.save()
    reloaded = EmbeddingCache(path)
    assert set(reloaded.vectors) == set(cache.vectors)
    encode(["one", "three"], "fake-model", cache=reloaded)
    assert fake_model.encoded == ["one", "three"]


def test_sentence_embeddings_transform_uses_shared_cache(fake_model, tmp_path):
    path = tmp_path / "shared.npz"
    features = SentenceEmbeddings(model_path="fake-model", cache_path=str(path)).fit(["a"])
    out = features.transform(["hello", "hi"])
    np.testing.assert_array_equal(out[:, 0], [5, 2])
    assert shared_cache(path) is shared_cache(str(path))
    features.transform(["hello"])
    assert fake_model.encoded == ["hello", "hi"]


def test_make_student_rejects_unknown_features():
    from backend.students import make_student

    with pytest.raises(ValueError, match=r"unknown features 'bag'; expected one of \['tfidf', 'embeddings'\]"):
        make_student("lr", features="bag")
