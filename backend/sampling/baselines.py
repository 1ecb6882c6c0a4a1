"""Baseline selection strategies: random sampling and greedy top-k uncertainty sampling."""

import numpy as np

from backend.sampling.mraru import check_pool_args, check_uncertainty


def random_select(n_pool: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Draw min(k, n_pool) distinct pool positions uniformly at random.

    Parameters
    ----------
    n_pool : int
        Number of unlabelled items.
    k : int
        Batch size; k > n_pool takes the whole pool.
    rng : numpy.random.Generator
        Source of randomness; the same seed gives the same positions.

    Returns
    -------
    indices : ndarray of shape (min(k, n_pool),)
        Pool positions in the order drawn.
    """
    check_pool_args(n_pool, k, rng)
    return rng.permutation(n_pool)[: min(k, n_pool)].astype(np.int64)


def greedy_select(uncertainty, k: int) -> np.ndarray:
    """Take the k most uncertain pool positions; ties go to the lower position.

    Parameters
    ----------
    uncertainty : array-like of shape (n_pool,)
        Uncertainty of every pool item, in [0, 1].
    k : int
        Batch size; k > n_pool takes the whole pool.

    Returns
    -------
    indices : ndarray of shape (min(k, n_pool),)
        Pool positions by decreasing uncertainty.
    """
    u = check_uncertainty(uncertainty, expected_len=None)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be an int >= 0; got {k!r}.")
    # A stable sort keeps equal values in position order, which breaks ties by lower index.
    return np.argsort(-u, kind="stable")[:k].astype(np.int64)
