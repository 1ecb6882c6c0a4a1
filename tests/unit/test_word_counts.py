"""The simulator's precomputed word counts give exactly the matrices of the backend's TextFeatures."""

import copy
import pickle

import numpy as np
import pytest

from backend.datasets import Dataset
from backend.simulate import word_counts
from backend.simulate.corpora import split_corpus
from backend.simulate.fitting import make_fitter
from backend.simulate.runner import RunConfig, run_simulation
from backend.simulate.teachers import GoldTeacher
from backend.simulate.word_counts import CorpusWordCounts, CountedTextFeatures
from backend.students import fit_student
from backend.students.features import TextFeatures


def random_texts(n=600, seed=0):
    """Texts of 20-60 words drawn from 3,000 made-up words, with case, punctuation and repeats.

    Their 1-2-grams outnumber the 20,000-feature cap, so the cap and its ties are exercised.
    """
    rng = np.random.default_rng(seed)
    vocabulary = [f"w{i}" for i in range(3000)] + ["Word", "WORD", "!", "?!", "café", "naïve", "🙂"]
    texts = [" ".join(rng.choice(vocabulary, rng.integers(20, 60))) for _ in range(n)]
    return texts + texts[:5] + ["", "!!!"]


def assert_same_matrix(expected, got):
    assert type(got) is type(expected)
    assert got.shape == expected.shape
    assert got.dtype == expected.dtype
    assert got.indices.dtype == expected.indices.dtype
    assert got.has_sorted_indices == expected.has_sorted_indices
    np.testing.assert_array_equal(got.indptr, expected.indptr)
    np.testing.assert_array_equal(got.indices, expected.indices)
    np.testing.assert_array_equal(got.data, expected.data)


@pytest.fixture(scope="module")
def texts():
    return random_texts()


@pytest.mark.parametrize("n_train", [3, 40, 400])
def test_counted_features_equal_text_features(texts, n_train):
    rng = np.random.default_rng(n_train)
    train = [texts[i] for i in rng.choice(len(texts), n_train, replace=False)] + texts[:2]
    plain, counted = TextFeatures(), CountedTextFeatures(CorpusWordCounts(texts))

    assert_same_matrix(plain.fit_transform(train), counted.fit_transform(train))
    assert_same_matrix(plain.transform(texts), counted.transform(texts))
    # The vocabulary keeps scikit-learn's insertion order too, not only its content.
    assert list(counted.words_.vocabulary_.items()) == list(plain.words_.vocabulary_.items())
    np.testing.assert_array_equal(counted.words_.idf_, plain.words_.idf_)


def test_counted_features_cap_vocabulary(texts):
    counted = CountedTextFeatures(CorpusWordCounts(texts)).fit(texts)

    assert len(counted.words_.vocabulary_) == 20000


def test_unknown_texts_tokenised_as_usual(texts):
    outside = ["w1 w2 w3 a text the corpus never had", "Word !"]
    plain, counted = TextFeatures().fit(texts[:50]), CountedTextFeatures(CorpusWordCounts(texts)).fit(texts[:50])

    assert_same_matrix(plain.transform(outside), counted.transform(outside))
    assert_same_matrix(TextFeatures().fit_transform(outside),
                       CountedTextFeatures(CorpusWordCounts(texts)).fit_transform(outside))


def test_refitted_vectorizer_maps_new_vocabulary():
    corpus = ["a b c", "d e f", "a d"]
    counted = CountedTextFeatures(CorpusWordCounts(corpus)).fit(corpus[:1]).words_
    counted.transform(corpus)
    counted.fit(corpus[1:2])
    plain = TextFeatures().fit(corpus[1:2]).words_

    assert_same_matrix(plain.transform(["d e f"]), counted.transform(["d e f"]))


def test_old_scikit_learn_counts_as_usual(texts, monkeypatch):
    monkeypatch.setattr(word_counts, "_align_api_if_sparse", None)
    plain, counted = TextFeatures(), CountedTextFeatures(CorpusWordCounts(texts))

    assert_same_matrix(plain.fit_transform(texts[:40]), counted.fit_transform(texts[:40]))
    assert_same_matrix(plain.transform(texts), counted.transform(texts))


def test_digest_separates_joined_texts():
    joined, split = CorpusWordCounts(["x y\nz w"]), CorpusWordCounts(["x y", "z w"])

    assert joined.digest != split.digest


def test_digest_accepts_lone_surrogates():
    truncated_emoji = "a truncated emoji \ud83d"

    assert len(CorpusWordCounts([truncated_emoji]).digest) == 40


def test_empty_texts_raise_empty_vocabulary(texts):
    with pytest.raises(ValueError, match="empty vocabulary"):
        TextFeatures().fit([""])
    with pytest.raises(ValueError, match="empty vocabulary"):
        CountedTextFeatures(CorpusWordCounts(texts)).fit([""])


def test_student_probabilities_unchanged(texts):
    labels = [("yes", "no")[len(text) % 2] for text in texts]
    plain = fit_student("lr", texts[:300], labels[:300], random_state=0)
    counted = fit_student("lr", texts[:300], labels[:300], random_state=0,
                          text_features=CountedTextFeatures(CorpusWordCounts(texts)))

    np.testing.assert_array_equal(counted.predict_proba(texts), plain.predict_proba(texts))


def test_counts_built_once_per_process(texts):
    counts = CorpusWordCounts(texts)
    params = {name: TextFeatures()._vectorizers()[0].get_params()[name] for name in ("token_pattern", "ngram_range")}

    # Only the texts travel to a worker process.
    assert set(counts.__getstate__()) == {"texts", "digest"}
    assert copy.deepcopy(counts) is counts
    assert pickle.loads(pickle.dumps(counts)).built(params) is counts.built(params)
    assert any(key.startswith(counts.digest) for key in word_counts._BUILT)


def test_simulation_repeats_with_word_counts():
    rng = np.random.default_rng(1)
    texts = random_texts(n=200, seed=1)
    labels = [str(rng.integers(3)) for _ in texts]
    split = split_corpus(Dataset(texts, labels, ("0", "1", "2"), "made-up"), test_fraction=0.25, split_seed=0)
    config = RunConfig(strategy="margin", student="lr", seed_size=10, batch_size=10, budget=60)

    runs = [run_simulation(split, GoldTeacher(split.pool_texts, split.pool_labels), config,
                           make_fitter("lr", "tfidf", corpus=corpus)) for corpus in (None, split)]

    assert runs[1]["points"] == runs[0]["points"]
    assert [r["n_scored"] for r in runs[1]["rounds"]] == [r["n_scored"] for r in runs[0]["rounds"]]
