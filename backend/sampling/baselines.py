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


def epsilon_uncertainty_select(uncertainty, k: int, eps: float, rng: np.random.Generator) -> np.ndarray:
    """Epsilon-greedy uncertainty sampling, in the manner of libact's EpsilonUncertaintySampling.

    Each of the min(k, n_pool) picks is, with probability `eps`, a uniform draw from the items not
    picked yet and otherwise the most uncertain item not picked yet (ties to the lower position).

    Parameters
    ----------
    uncertainty : array-like of shape (n_pool,)
        Uncertainty of every pool item, in [0, 1].
    k : int
        Batch size; k > n_pool takes the whole pool.
    eps : float
        Exploration rate in [0, 1]: 0 is greedy top-k, 1 is random sampling.
    rng : numpy.random.Generator
        Source of the coin flips and random picks.

    Returns
    -------
    indices : ndarray of shape (min(k, n_pool),)
        Pool positions in the order picked.
    """
    u = check_uncertainty(uncertainty, expected_len=None)
    check_pool_args(u.size, k, rng)
    if not (np.isfinite(eps) and 0.0 <= eps <= 1.0):
        raise ValueError(f"eps must be in [0, 1] for epsilon_uncertainty; got {eps!r}.")
    n_take = min(k, u.size)
    n_random = int(np.count_nonzero(rng.random(n_take) < eps))
    greedy = np.argsort(-u, kind="stable")[: n_take - n_random]
    rest = np.setdiff1d(np.arange(u.size), greedy, assume_unique=True)
    explored = rng.choice(rest, size=n_random, replace=False) if n_random else np.empty(0, dtype=np.int64)
    return np.concatenate([greedy, explored]).astype(np.int64)


def power_select(uncertainty, k: int, rng: np.random.Generator, power: float = 1.0) -> np.ndarray:
    """Power sampling, in the manner of baal's PowerSampling: draw k items without replacement
    with probability proportional to ``u ** power``.

    The draw uses the Gumbel-top-k trick: the k largest ``power * log(u) + G`` with G standard
    Gumbel noise. Items with u = 0 come last, in a random order.

    Parameters
    ----------
    uncertainty : array-like of shape (n_pool,)
        Uncertainty of every pool item, in [0, 1].
    k : int
        Batch size; k > n_pool takes the whole pool.
    rng : numpy.random.Generator
        Source of the Gumbel noise.
    power : float
        Exponent beta > 0; large values approach greedy top-k, small values random sampling.

    Returns
    -------
    indices : ndarray of shape (min(k, n_pool),)
        Pool positions by decreasing perturbed score.
    """
    u = check_uncertainty(uncertainty, expected_len=None)
    check_pool_args(u.size, k, rng)
    if not (np.isfinite(power) and power > 0.0):
        raise ValueError(f"power must be a finite number > 0; got {power!r}. Use 1 for sampling in proportion to u.")
    gumbel = rng.gumbel(size=u.size)
    with np.errstate(divide="ignore"):
        keys = power * np.log(u)
    # Zero-uncertainty items (log u = -inf) rank after every other item, in a random order.
    is_zero = ~np.isfinite(keys)
    perturbed = np.where(is_zero, 0.0, keys) + gumbel
    order = np.lexsort((-perturbed, is_zero))
    return order[: min(k, u.size)].astype(np.int64)
