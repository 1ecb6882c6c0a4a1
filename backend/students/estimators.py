"""Student classifiers: scikit-learn pipelines from raw text to class probabilities.

Every student starts with the same text features: word 1-2-gram TF-IDF, plus character (char_wb)
2-4-gram TF-IDF when the training texts include text without spaces, such as Chinese or Japanese
(see `backend.students.features`). Vocabularies are capped with ``max_features`` to keep
prediction fast.
"""

from collections import Counter

import numpy as np
from sklearn.base import clone
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from .features import TextFeatures
from .stages import CalibratedSVC, CappedTruncatedSVD, MultiLabelHead, NotEnoughDataError, check_indicator

__all__ = [
    "CalibratedSVC", "CappedTruncatedSVD", "FEATURES", "MIN_PER_CLASS", "MultiLabelHead", "NotEnoughDataError",
    "STUDENTS", "check_indicator", "check_trainable", "fit_student", "make_student", "make_text_features",
]

STUDENTS = ("svm", "lda", "rf", "gbdt", "lr")

# Minimum examples per class each student needs. The SVM calibrates its scores with
# stratified cross-validation, which needs at least two examples of every class.
MIN_PER_CLASS = {"svm": 2, "lda": 2, "rf": 1, "gbdt": 1, "lr": 1}
FEATURES = ("tfidf", "embeddings")


def make_text_features() -> TextFeatures:
    """Build the shared text features (see `TextFeatures`)."""
    return TextFeatures()


def make_student(name: str = "svm", *, multilabel: bool = False, random_state: int = 0,
                 features: str = "tfidf", embedding_cache=None, text_features=None) -> Pipeline:
    """Build an unfitted student that takes a list of texts.

    Parameters
    ----------
    name : {"svm", "lda", "rf", "gbdt", "lr"}
        "svm": calibrated linear SVM on TF-IDF (the default). "lda": TF-IDF, truncated SVD
        (rank capped by the data) and shrinkage LDA. "rf": random forest on TF-IDF. "gbdt":
        histogram gradient boosting on SVD-reduced TF-IDF. "lr": logistic regression on TF-IDF.
    multilabel : bool
        If True, the last step is a `MultiLabelHead`: ``fit(texts, Y)`` takes a 0/1 indicator of
        shape (n_samples, n_labels) and ``predict_proba`` returns positive-class probabilities
        of that shape.
    random_state : int
        Seed of every randomized step.
    features : {"tfidf", "embeddings"}
        "tfidf" (default) or sentence embeddings from the optional [embeddings] extra (see
        `backend.students.embeddings`); with embeddings "lda" and "gbdt" skip the SVD.
    embedding_cache : str, optional
        `.npz` file of embeddings by text, shared by every student of the process.
    text_features : TextFeatures, optional
        With "tfidf": the feature step to use instead of a new `TextFeatures`; the simulator
        passes one that reads precomputed word counts (`backend.simulate.word_counts`).

    Returns
    -------
    sklearn.pipeline.Pipeline
    """
    if name not in STUDENTS:
        raise ValueError(f"unknown student {name!r}; expected one of {list(STUDENTS)}.")
    if features not in FEATURES:
        raise ValueError(f"unknown features {features!r}; expected one of {list(FEATURES)}.")
    if features == "embeddings":
        from .embeddings import SentenceEmbeddings

        steps = [("features", SentenceEmbeddings(cache_path=embedding_cache))]
    else:
        steps = [("features", text_features if text_features is not None else make_text_features())]
    if name in ("lda", "gbdt") and features == "tfidf":
        steps.append(("svd", CappedTruncatedSVD(n_components=100, random_state=random_state)))
    classifier = {
        "svm": lambda: CalibratedSVC(C=0.5, random_state=random_state),
        "lda": lambda: LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"),
        "rf": lambda: RandomForestClassifier(n_estimators=100, random_state=random_state),
        "gbdt": lambda: HistGradientBoostingClassifier(
            max_iter=100, min_samples_leaf=5, early_stopping=False, random_state=random_state
        ),
        "lr": lambda: LogisticRegression(C=10.0, max_iter=1000),
    }[name]()
    if multilabel:
        classifier = MultiLabelHead(classifier, min_per_class=MIN_PER_CLASS[name])
    steps.append(("classifier", classifier))
    return Pipeline(steps)


def check_trainable(labels, name: str = "svm", *, multilabel: bool = False) -> dict:
    """Check that the labels can train student `name`; raise `NotEnoughDataError` if not.

    Parameters
    ----------
    labels : list of str, or array-like of shape (n_samples, n_labels)
        Class names, or a 0/1 indicator when `multilabel` is True.
    name : str
        Student name; sets the examples needed per class (`MIN_PER_CLASS`).
    multilabel : bool
        Whether `labels` is a multi-label indicator.

    Returns
    -------
    counts : dict
        Examples per class, or positives per label column for multi-label.
    """
    if name not in MIN_PER_CLASS:
        raise ValueError(f"unknown student {name!r}; expected one of {list(STUDENTS)}.")
    needed = MIN_PER_CLASS[name]
    if multilabel:
        return _check_trainable_multilabel(labels, name, needed)

    counts = dict(sorted(Counter(str(label) for label in labels).items()))
    if len(counts) < 2:
        raise NotEnoughDataError(
            f"student {name!r} needs examples of at least 2 classes; got {len(labels)} examples "
            f"with counts {counts}. Annotate tasks of another class before training."
        )
    short = {label: n for label, n in counts.items() if n < needed}
    if short:
        raise NotEnoughDataError(
            f"student {name!r} needs at least {needed} examples per class; classes {short} have "
            f"fewer (all counts: {counts}). Annotate more tasks of those classes."
        )
    return counts


def _check_trainable_multilabel(labels, name: str, needed: int) -> dict:
    """Require at least one label column with `needed` positives and `needed` negatives."""
    Y = check_indicator(labels)
    positives = Y.sum(axis=0)
    counts = {int(label): int(n) for label, n in enumerate(positives)}
    trainable = (positives >= needed) & (Y.shape[0] - positives >= needed)
    if not trainable.any():
        raise NotEnoughDataError(
            f"student {name!r} needs at least one label with {needed} positive and {needed} "
            f"negative examples; got {Y.shape[0]} examples with positives per label {counts}. "
            "Annotate more tasks."
        )
    return counts


def fit_student(name: str, texts, labels, *, multilabel: bool = False, random_state: int = 0,
                features: str = "tfidf", embedding_cache=None, text_features=None):
    """Check the labels, then fit a fresh clone of ``make_student(name, ...)``.

    Parameters
    ----------
    name : str
        Student name (see `make_student`).
    texts : list of str, length n_samples
    labels : list of str of length n_samples, or array-like of shape (n_samples, n_labels)
        Class names, or a 0/1 indicator when `multilabel` is True.
    multilabel : bool
    random_state : int
    features, embedding_cache, text_features
        See `make_student`.

    Returns
    -------
    sklearn.pipeline.Pipeline
        Fitted; ``predict_proba`` columns follow ``classes_``.
    """
    texts = list(texts)
    if not all(isinstance(text, str) for text in texts):
        raise TypeError("texts must be a list of str; convert or drop the non-text items first.")
    if len(texts) != len(labels):
        raise ValueError(f"got {len(texts)} texts but {len(labels)} labels; pass one label per text.")
    check_trainable(labels, name, multilabel=multilabel)

    targets = check_indicator(labels) if multilabel else np.asarray([str(label) for label in labels])
    student = clone(make_student(name, multilabel=multilabel, random_state=random_state, features=features,
                                 embedding_cache=embedding_cache, text_features=text_features))
    try:
        return student.fit(texts, targets)
    except ValueError as error:
        if "empty vocabulary" not in str(error):
            raise
        raise NotEnoughDataError(
            f"student {name!r}: the {len(texts)} training texts contain no words or characters "
            "to build features from; annotate tasks with non-empty text."
        ) from error
