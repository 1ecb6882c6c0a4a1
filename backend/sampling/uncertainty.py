"""Uncertainty scores in [0, 1] computed from a student's predicted probabilities.

Every score is 0 for a fully confident prediction and 1 for the least confident one, so the
M-RARU acceptance probability can use any of them directly.
"""

import numpy as np

# Tolerance for rows of `predict_proba` that should sum to 1; calibrated and ensemble students
# return sums that differ from 1 by a few ulp.
ROW_SUM_ATOL = 1e-5


def _check_proba(proba, *, name: str, rows_sum_to_one: bool) -> np.ndarray:
    """Validate a probability matrix and return it as a float 2-D array."""
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array of shape (n_samples, n_columns); got shape {proba.shape}. "
            "Reshape a single row with proba.reshape(1, -1)."
        )
    if not np.all(np.isfinite(proba)):
        bad = int(np.count_nonzero(~np.isfinite(proba)))
        raise ValueError(f"{name} contains {bad} NaN or infinite values; pass finite probabilities.")
    if proba.size and (proba.min() < 0.0 or proba.max() > 1.0):
        raise ValueError(
            f"{name} values must be in [0, 1]; got min {proba.min():.6g} and max {proba.max():.6g}. "
            "Pass probabilities (predict_proba), not decision-function scores."
        )
    if rows_sum_to_one:
        if proba.shape[1] < 2:
            raise ValueError(
                f"{name} must have at least 2 class columns; got shape {proba.shape}. "
                "A student that has seen one class cannot rank items: use cold start (score=None)."
            )
        sums = proba.sum(axis=1)
        worst = int(np.argmax(np.abs(sums - 1.0))) if sums.size else 0
        if sums.size and abs(sums[worst] - 1.0) > ROW_SUM_ATOL:
            raise ValueError(
                f"{name} rows must sum to 1 (tolerance {ROW_SUM_ATOL}); row {worst} sums to "
                f"{sums[worst]:.6g}. Pass multi-class probabilities, or use multilabel() for "
                "per-label positive probabilities."
            )
    return proba


def margin(proba) -> np.ndarray:
    """Compute the margin uncertainty ``1 - (p(1) - p(2))``.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Class probabilities; each row sums to 1 and ``n_classes >= 2``.

    Returns
    -------
    u : ndarray of shape (n_samples,)
        Values in [0, 1], where p(1) >= p(2) are the two largest probabilities of a row.
    """
    proba = _check_proba(proba, name="proba", rows_sum_to_one=True)
    top2 = np.sort(proba, axis=1)[:, -2:]
    return np.clip(1.0 - (top2[:, 1] - top2[:, 0]), 0.0, 1.0)


def least_confidence(proba) -> np.ndarray:
    """Compute the least-confidence uncertainty ``(1 - p(1)) * K / (K - 1)``.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Class probabilities; each row sums to 1 and ``n_classes = K >= 2``.

    Returns
    -------
    u : ndarray of shape (n_samples,)
        Values in [0, 1]; the factor K / (K - 1) maps the uniform row to 1.
    """
    proba = _check_proba(proba, name="proba", rows_sum_to_one=True)
    n_classes = proba.shape[1]
    u = (1.0 - proba.max(axis=1)) * n_classes / (n_classes - 1)
    return np.clip(u, 0.0, 1.0)


def entropy(proba) -> np.ndarray:
    """Compute the normalised Shannon entropy ``-sum_k p_k log p_k / log K``.

    Parameters
    ----------
    proba : array-like of shape (n_samples, n_classes)
        Class probabilities; each row sums to 1 and ``n_classes = K >= 2``.

    Returns
    -------
    u : ndarray of shape (n_samples,)
        Values in [0, 1], with ``0 log 0`` taken as 0.
    """
    proba = _check_proba(proba, name="proba", rows_sum_to_one=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(proba > 0.0, proba * np.log(proba), 0.0)
    u = -terms.sum(axis=1) / np.log(proba.shape[1])
    return np.clip(u, 0.0, 1.0)


def multilabel(proba_positive) -> np.ndarray:
    """Compute the multi-label uncertainty: the mean over labels of ``1 - |2 p_l - 1|``.

    Parameters
    ----------
    proba_positive : array-like of shape (n_samples, n_labels)
        Probability that each label applies; rows need not sum to 1.

    Returns
    -------
    u : ndarray of shape (n_samples,)
        Values in [0, 1]; a label at p = 0.5 contributes 1 and a label at 0 or 1 contributes 0.
    """
    proba = _check_proba(proba_positive, name="proba_positive", rows_sum_to_one=False)
    if proba.shape[1] < 1:
        raise ValueError(
            f"proba_positive must have at least 1 label column; got shape {proba.shape}."
        )
    return np.clip(1.0 - np.abs(2.0 * proba - 1.0), 0.0, 1.0).mean(axis=1)


UNCERTAINTY_MEASURES = {
    "margin": margin,
    "least_confidence": least_confidence,
    "entropy": entropy,
}
