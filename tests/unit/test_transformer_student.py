"""The fine-tuned transformer student on tiny generated texts (1 epoch, 32 tokens)."""

import sys

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from backend.simulate.fitting import make_fitter
from backend.simulate.runner import _trainable
from backend.students import NotEnoughDataError
from backend.students.transformer import TransformerClassifier

GOOD = ["great", "lovely", "wonderful", "superb"]
BAD = ["awful", "dreadful", "terrible", "boring"]


def _corpus(n: int = 16):
    rng = np.random.default_rng(0)
    texts, labels = [], []
    for i in range(n):
        label = "zeta" if i % 2 else "alpha"
        words = GOOD if label == "zeta" else BAD
        texts.append(f"the film was {rng.choice(words)} and {rng.choice(words)}")
        labels.append(label)
    return texts, labels


def _small(**params) -> TransformerClassifier:
    return TransformerClassifier(epochs=1, batch_size=8, max_length=32, **params)


@pytest.fixture(scope="module")
def fitted():
    texts, labels = _corpus()
    return _small(random_state=0).fit(texts, labels)


def test_transformer_predict_proba_shape_and_rows(fitted):
    proba = fitted.predict_proba(["a great film", "an awful film", "plain"])
    assert proba.shape == (3, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba >= 0).all()


def test_transformer_classes_sorted(fitted):
    assert fitted.classes_.tolist() == ["alpha", "zeta"]
    texts = ["a great film", "an awful film"]
    expected = fitted.classes_[fitted.predict_proba(texts).argmax(axis=1)]
    assert fitted.predict(texts).tolist() == expected.tolist()


def test_transformer_empty_input(fitted):
    assert fitted.predict_proba([]).shape == (0, 2)


def test_transformer_clone_keeps_params(fitted):
    copy = clone(fitted)
    assert copy.get_params() == fitted.get_params()
    assert not hasattr(copy, "model_")
    with pytest.raises(NotFittedError):
        copy.predict_proba(["a film"])


def test_transformer_same_seed_repeats(fitted):
    texts, labels = _corpus()
    probe = ["a great film", "an awful film"]
    again = _small(random_state=0).fit(texts, labels)
    np.testing.assert_allclose(again.predict_proba(probe), fitted.predict_proba(probe), atol=1e-6)
    other = _small(random_state=1).fit(texts, labels)
    assert not np.allclose(other.predict_proba(probe), fitted.predict_proba(probe), atol=1e-6)


def test_transformer_one_class_raises_not_enough_data():
    with pytest.raises(NotEnoughDataError, match="at least 2 classes"):
        _small().fit(["a film", "another film"], ["alpha", "alpha"])


def test_transformer_invalid_epochs():
    with pytest.raises(ValueError, match="invalid epochs 0: expected a positive int"):
        TransformerClassifier(epochs=0).fit(*_corpus(4))


def test_transformer_mismatched_lengths():
    with pytest.raises(ValueError, match="got 2 texts but 1 labels"):
        _small().fit(["a", "b"], ["alpha"])


def test_transformer_missing_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(ImportError, match=r"pip install torch==2\.13\.0 'mraru-backend\[transformer\]'"):
        _small().fit(*_corpus(4))


def test_transformer_simulator_fitter():
    texts, labels = _corpus()
    fit = make_fitter("transformer", "tfidf")
    model = fit(texts, labels, 0)
    assert isinstance(model, TransformerClassifier)
    assert model.random_state == 0


def test_transformer_trainable_in_runner():
    assert _trainable(["alpha", "zeta"], "transformer")
    assert not _trainable(["alpha", "alpha"], "transformer")
