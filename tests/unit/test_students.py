import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

from backend.students.features import TextFeatures, unspaced_share
from backend.students import STUDENTS, NotEnoughDataError, check_trainable, fit_student, make_student
from backend.students.estimators import CalibratedSVC, CappedTruncatedSVD, MultiLabelHead

CLASS_WORDS = {
    "sports": ["goal", "match", "team", "score", "coach", "league"],
    "politics": ["vote", "election", "senate", "policy", "minister", "party"],
    "tech": ["software", "chip", "network", "device", "code", "robot"],
}
SHARED_WORDS = ["the", "a", "today", "news", "report", "people", "new", "big"]


def make_corpus(n_per_class=20, seed=0):
    """Short texts whose class shows in 3 of 6 words; the other words are shared."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for label, words in CLASS_WORDS.items():
        for _ in range(n_per_class):
            tokens = list(rng.choice(words, 3)) + list(rng.choice(SHARED_WORDS, 3))
            rng.shuffle(tokens)
            texts.append(" ".join(tokens))
            labels.append(label)
    return texts, labels


# The pipelines take raw text, which check_estimator cannot feed, so the checks run on the
# custom numeric stages. MultiLabelHead only accepts 2-D indicator targets, so check_estimator
# does not apply to it; the multi-label tests below cover it. The array API check skips itself
# unless SCIPY_ARRAY_API is set, and these stages do not claim array API support.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.SkipTestWarning")
@pytest.mark.parametrize("estimator", [CalibratedSVC(), CappedTruncatedSVD(n_components=3)])
def test_custom_stage_check_estimator(estimator):
    check_estimator(estimator)


@pytest.mark.parametrize("name", STUDENTS)
def test_fit_student_fits_and_predicts(name):
    texts, labels = make_corpus()
    student = fit_student(name, texts, labels)
    proba = student.predict_proba(texts)

    assert list(student.classes_) == sorted(CLASS_WORDS)
    assert proba.shape == (len(texts), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(student.classes_[proba.argmax(axis=1)], student.predict(texts))
    assert np.mean(student.predict(texts) == np.asarray(labels)) > 0.8


@pytest.mark.parametrize("name", STUDENTS)
def test_make_student_clone_keeps_params(name):
    student = make_student(name, random_state=3)
    copy = clone(student)
    assert copy is not student
    assert sorted(copy.get_params()) == sorted(student.get_params())


@pytest.mark.parametrize("name", STUDENTS)
def test_fit_student_held_out_columns_follow_classes(name):
    texts, labels = make_corpus(seed=1)
    student = fit_student(name, texts, labels, random_state=1)
    held_out = ["goal goal team coach", "vote senate election party", "chip robot software code"]
    proba = student.predict_proba(held_out)
    expected = ["sports", "politics", "tech"]
    assert [student.classes_[i] for i in proba.argmax(axis=1)] == expected


def test_fit_student_cjk_texts_get_features():
    texts = ["我喜欢这部电影", "这部电影很好看", "演员表演很精彩", "非常好的故事",
             "我讨厌这部电影", "这部电影很无聊", "演员表演很差", "非常糟糕的故事"]
    labels = ["pos"] * 4 + ["neg"] * 4
    student = fit_student("svm", texts, labels)
    features = student[:-1].transform(texts)
    assert np.all(features.getnnz(axis=1) > 3)
    chars = student.named_steps["features"].chars_
    assert "电影" in chars.vocabulary_
    assert student.predict_proba(["很无聊的电影"]).shape == (1, 2)


def test_fit_student_one_class():
    with pytest.raises(NotEnoughDataError, match=r"at least 2 classes; got 3 examples with counts \{'pos': 3\}"):
        fit_student("lr", ["good", "fine", "great"], ["pos"] * 3)


def test_check_trainable_svm_needs_two_per_class():
    with pytest.raises(NotEnoughDataError, match=r"at least 2 examples per class; classes \{'neg': 1\}"):
        check_trainable(["pos", "pos", "neg"], "svm")


def test_check_trainable_rf_one_per_class():
    assert check_trainable(["pos", "pos", "neg"], "rf") == {"neg": 1, "pos": 2}


def test_check_trainable_unknown_student():
    with pytest.raises(ValueError, match=r"unknown student 'bert'; expected one of"):
        check_trainable(["a", "b"], "bert")


@pytest.mark.parametrize("name", STUDENTS)
def test_fit_student_minimal_data(name):
    texts = ["good film", "great film", "bad film", "awful film"]
    student = fit_student(name, texts, ["pos", "pos", "neg", "neg"])
    assert student.predict_proba(["good"]).shape == (1, 2)


def test_fit_student_empty_texts():
    with pytest.raises(NotEnoughDataError, match="contain no words or characters"):
        fit_student("lr", ["", " ", "", "  "], ["a", "b", "a", "b"])


def test_fit_student_length_mismatch():
    with pytest.raises(ValueError, match="got 2 texts but 3 labels"):
        fit_student("lr", ["a", "b"], ["x", "y", "x"])


def test_fit_student_rejects_non_text():
    with pytest.raises(TypeError, match="texts must be a list of str"):
        fit_student("lr", ["a", None], ["x", "y"])


def test_make_student_unknown_name():
    with pytest.raises(ValueError, match=r"unknown student 'knn'; expected one of \['svm'"):
        make_student("knn")


def test_capped_svd_caps_rank_by_data():
    svd = CappedTruncatedSVD(n_components=100).fit(np.random.default_rng(0).random((5, 8)))
    assert svd.n_components_ == 4
    assert svd.transform(np.ones((2, 8))).shape == (2, 4)


@pytest.mark.parametrize("name", STUDENTS)
def test_fit_student_multilabel_constant_labels(name):
    texts, labels = make_corpus(n_per_class=10)
    Y = np.zeros((len(texts), 4), dtype=int)
    Y[:, 0] = [label == "sports" for label in labels]
    Y[:, 1] = [label != "tech" for label in labels]
    Y[:, 3] = 1
    student = fit_student(name, texts, Y, multilabel=True)
    proba = student.predict_proba(texts)

    assert proba.shape == (len(texts), 4)
    np.testing.assert_array_equal(student.classes_, np.arange(4))
    np.testing.assert_array_equal(proba[:, 2], 0.0)
    np.testing.assert_array_equal(proba[:, 3], 1.0)
    assert np.mean((proba[:, 0] >= 0.5) == Y[:, 0].astype(bool)) > 0.8
    np.testing.assert_array_equal(student.predict(texts), (proba >= 0.5).astype(int))


def test_multilabel_head_rare_label_gets_positive_rate():
    X = np.random.default_rng(0).random((10, 3))
    Y = np.zeros((10, 2), dtype=int)
    Y[:5, 0] = 1
    Y[0, 1] = 1
    head = MultiLabelHead(CalibratedSVC(), min_per_class=2).fit(X, Y)
    assert head.estimators_[1] is None
    np.testing.assert_allclose(head.predict_proba(X)[:, 1], 0.1)


def test_check_trainable_multilabel_no_trainable_label():
    Y = np.array([[1, 0], [1, 0], [1, 1]])
    with pytest.raises(NotEnoughDataError, match=r"positives per label \{0: 3, 1: 1\}"):
        check_trainable(Y, "svm", multilabel=True)


def test_check_trainable_multilabel_counts():
    Y = np.array([[1, 0], [0, 0], [1, 1]])
    assert check_trainable(Y, "lr", multilabel=True) == {0: 2, 1: 1}


def test_check_trainable_multilabel_invalid_indicator():
    with pytest.raises(ValueError, match=r"0/1 indicator of shape \(n_samples, n_labels\); got shape \(3,\)"):
        check_trainable([1, 0, 1], "lr", multilabel=True)
    with pytest.raises(ValueError, match="only 0 and 1"):
        check_trainable([[2, 0]], "lr", multilabel=True)


def test_multilabel_head_without_estimator():
    with pytest.raises(ValueError, match="MultiLabelHead needs an estimator"):
        MultiLabelHead().fit(np.ones((2, 2)), np.array([[0], [1]]))


def test_text_features_skip_chars_for_spaced_text():
    features = TextFeatures().fit(["a fine film", "a dull film", "great acting", "poor acting"])

    assert features.chars_ is None
    assert features.transform(["fine acting"]).shape[1] == len(features.words_.vocabulary_)


def test_text_features_add_chars_for_japanese():
    texts = ["とても面白い映画でした", "つまらない映画でした", "a fine film", "a dull film"]

    features = TextFeatures().fit(texts)

    assert features.chars_ is not None
    assert unspaced_share(texts) == 0.5


def test_text_features_reject_bad_char_setting():
    with pytest.raises(ValueError, match="char_ngrams must be 'auto', True or False; got 'yes'"):
        TextFeatures(char_ngrams="yes").fit(["text"])
