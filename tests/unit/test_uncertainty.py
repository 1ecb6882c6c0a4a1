import numpy as np
import pytest

from backend.sampling.uncertainty import (
    UNCERTAINTY_MEASURES,
    entropy,
    least_confidence,
    margin,
    multilabel,
)

PROBA = np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0], [0.5, 0.5, 0.0]])


def test_margin_known_values():
    np.testing.assert_allclose(margin(PROBA), [0.5, 1.0, 0.0, 1.0])


def test_least_confidence_known_values():
    np.testing.assert_allclose(least_confidence(PROBA), [0.45, 1.0, 0.0, 0.75])


def test_entropy_known_values():
    expected_first = -(0.7 * np.log(0.7) + 0.2 * np.log(0.2) + 0.1 * np.log(0.1)) / np.log(3)
    expected_last = np.log(2) / np.log(3)
    np.testing.assert_allclose(entropy(PROBA), [expected_first, 1.0, 0.0, expected_last])


@pytest.mark.parametrize("name", sorted(UNCERTAINTY_MEASURES))
def test_measures_range_and_shape(name):
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(4), size=200)
    u = UNCERTAINTY_MEASURES[name](proba)
    assert u.shape == (200,)
    assert u.min() >= 0.0
    assert u.max() <= 1.0


def test_measures_binary_agree():
    p1 = np.linspace(0.5, 1.0, 11)
    proba = np.column_stack([p1, 1 - p1])
    np.testing.assert_allclose(margin(proba), 2 * (1 - p1))
    np.testing.assert_allclose(least_confidence(proba), 2 * (1 - p1))
    assert np.all(np.diff(entropy(proba)) < 0)


def test_measures_empty_pool():
    assert margin(np.empty((0, 3))).shape == (0,)


def test_multilabel_known_values():
    proba = np.array([[0.5, 0.5], [0.0, 1.0], [0.75, 0.0]])
    np.testing.assert_allclose(multilabel(proba), [1.0, 0.0, 0.25])


def test_multilabel_rows_need_not_sum_to_one():
    assert multilabel(np.array([[0.9, 0.9, 0.9]])).shape == (1,)


@pytest.mark.parametrize(
    "proba, match",
    [
        (np.array([0.5, 0.5]), r"2-D array .* got shape \(2,\)"),
        (np.array([[0.5, np.nan]]), "1 NaN or infinite"),
        (np.array([[0.6, 0.6]]), r"row 0 sums to 1\.2"),
        (np.array([[1.2, -0.2]]), r"in \[0, 1\]; got min -0\.2"),
        (np.array([[1.0], [1.0]]), "at least 2 class columns"),
    ],
)
def test_margin_invalid_input(proba, match):
    with pytest.raises(ValueError, match=match):
        margin(proba)


def test_multilabel_invalid_input():
    with pytest.raises(ValueError, match=r"proba_positive must be a 2-D array"):
        multilabel([0.2, 0.4])
