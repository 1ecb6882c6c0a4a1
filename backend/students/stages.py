"""Estimator stages the students are built from: a calibrated SVM, a rank-capped SVD and a
multi-label head, with the error raised when labels cannot train a student yet."""

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.decomposition import TruncatedSVD
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import LinearSVC
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data


class NotEnoughDataError(ValueError):
    """The labelled examples cannot train the student yet; the message gives counts and needs."""


class CalibratedSVC(ClassifierMixin, BaseEstimator):
    """Linear SVM with sigmoid-calibrated probabilities.

    Calibration uses stratified k-fold cross-validation with
    ``min(max_folds, smallest class count)`` folds, so it trains from two examples per class.

    Parameters
    ----------
    C : float
        Inverse regularisation strength of `LinearSVC`.
    max_folds : int
        Upper bound on the cross-validation folds used for calibration.
    random_state : int
        Seed for the folds and the SVM.
    """

    def __init__(self, C=0.5, max_folds=3, random_state=0):
        self.C = C
        self.max_folds = max_folds
        self.random_state = random_state

    def fit(self, X, y):
        """Fit on X of shape (n_samples, n_features) and class labels y of shape (n_samples,)."""
        X, y = validate_data(self, X, y, accept_sparse="csr")
        check_classification_targets(y)
        self.classes_, counts = np.unique(y, return_counts=True)
        if self.classes_.size < 2:
            raise NotEnoughDataError(
                f"CalibratedSVC needs at least 2 classes; got 1 class ({self.classes_[0]!r})."
            )
        if counts.min() < 2:
            raise NotEnoughDataError(
                f"CalibratedSVC needs at least 2 examples per class for calibration; class "
                f"{self.classes_[counts.argmin()]!r} has {counts.min()}."
            )
        folds = StratifiedKFold(
            n_splits=int(min(self.max_folds, counts.min())), shuffle=True, random_state=self.random_state
        )
        svm = LinearSVC(C=self.C, random_state=self.random_state)
        # One SVM refit on all data with calibrators from the folds: a third of the prediction
        # cost of keeping one SVM per fold, at the same held-out accuracy on Rotten Tomatoes.
        self.calibrated_ = CalibratedClassifierCV(svm, method="sigmoid", cv=folds, ensemble=False).fit(X, y)
        return self

    def predict_proba(self, X):
        """Return probabilities of shape (n_samples, n_classes); columns follow `classes_`."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse="csr", reset=False)
        return self.calibrated_.predict_proba(X)

    def predict(self, X):
        """Return the most probable class of each row, shape (n_samples,)."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class CappedTruncatedSVD(TransformerMixin, BaseEstimator):
    """Truncated SVD whose rank is capped by the data: ``min(n_components, n_samples - 1, n_features - 1)``.

    Parameters
    ----------
    n_components : int
        Requested rank; the fitted rank is `n_components_` (at least 1).
    random_state : int
        Seed of the randomized SVD solver.
    """

    def __init__(self, n_components=100, random_state=0):
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, X, y=None):
        """Fit on X of shape (n_samples, n_features)."""
        self.fit_transform(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit and return the projection of shape (n_samples, n_components_)."""
        X = validate_data(self, X, accept_sparse=["csr", "csc"])
        n_samples, n_features = X.shape
        self.n_components_ = max(1, min(self.n_components, n_samples - 1, n_features - 1))
        self.svd_ = TruncatedSVD(self.n_components_, random_state=self.random_state)
        return self.svd_.fit_transform(X)

    def transform(self, X):
        """Project X of shape (n_samples, n_features) to shape (n_samples, n_components_)."""
        check_is_fitted(self)
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        return self.svd_.transform(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


class MultiLabelHead(ClassifierMixin, BaseEstimator):
    """One binary classifier per label, on shared features.

    A label whose positives or negatives number fewer than `min_per_class` (including a label
    that is always 0 or always 1) gets a constant probability: its positive rate in training.

    Parameters
    ----------
    estimator : classifier
        Unfitted binary classifier, cloned for each label.
    min_per_class : int
        Examples of each value (0 and 1) a label needs before a classifier is trained for it.
    """

    def __init__(self, estimator=None, min_per_class=1):
        self.estimator = estimator
        self.min_per_class = min_per_class

    def fit(self, X, Y):
        """Fit on features X of shape (n_samples, n_features) and a 0/1 indicator Y of shape (n_samples, n_labels)."""
        if self.estimator is None:
            raise ValueError("MultiLabelHead needs an estimator; pass an unfitted binary classifier.")
        Y = check_indicator(Y)
        self.classes_ = np.arange(Y.shape[1])
        self.estimators_, self.constants_ = [], np.full(Y.shape[1], np.nan)
        for label in range(Y.shape[1]):
            column = Y[:, label]
            n_positive = int(column.sum())
            if min(n_positive, column.size - n_positive) < self.min_per_class:
                self.constants_[label] = n_positive / column.size
                self.estimators_.append(None)
            else:
                self.estimators_.append(clone(self.estimator).fit(X, column))
        return self

    def predict_proba(self, X):
        """Return positive-class probabilities of shape (n_samples, n_labels)."""
        check_is_fitted(self)
        n_samples = X.shape[0] if hasattr(X, "shape") else len(X)
        proba = np.empty((n_samples, self.classes_.size))
        for label, estimator in enumerate(self.estimators_):
            if estimator is None:
                proba[:, label] = self.constants_[label]
            else:
                positive = int(np.flatnonzero(estimator.classes_ == 1)[0])
                proba[:, label] = estimator.predict_proba(X)[:, positive]
        return proba

    def predict(self, X):
        """Return the 0/1 indicator of shape (n_samples, n_labels), thresholded at 0.5."""
        return (self.predict_proba(X) >= 0.5).astype(int)


def check_indicator(Y) -> np.ndarray:
    """Validate a multi-label 0/1 indicator of shape (n_samples, n_labels) and return it as ints."""
    Y = np.asarray(Y)
    if Y.ndim != 2 or Y.shape[1] < 1:
        raise ValueError(
            f"multi-label targets must be a 0/1 indicator of shape (n_samples, n_labels); got shape "
            f"{Y.shape}. Build it with sklearn.preprocessing.MultiLabelBinarizer."
        )
    if Y.size and not np.isin(Y, (0, 1)).all():
        raise ValueError("multi-label targets must contain only 0 and 1; got other values.")
    return Y.astype(int)
