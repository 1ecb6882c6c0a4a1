"""Selection strategies: M-RARU and the baselines it is measured against.

All strategies share one contract through `select`: the caller passes ``score(positions) -> u``,
which returns uncertainties in [0, 1] under the measure the caller chose (see
`backend.sampling.uncertainty`), or None before a usable student exists.
"""

from typing import Optional

import numpy as np

from backend.sampling.baselines import greedy_select, random_select
from backend.sampling.mraru import (
    ScoreFn,
    Selection,
    acceptance_probability,
    check_pool_args,
    check_uncertainty,
    mraru_select,
)
from backend.sampling.uncertainty import UNCERTAINTY_MEASURES, multilabel

STRATEGIES = ("mraru", "random", "least_confidence", "margin", "entropy")
GREEDY_STRATEGIES = ("least_confidence", "margin", "entropy")
MRARU_PARAMS = ("eps", "tau", "chunk_size", "max_passes")

__all__ = [
    "GREEDY_STRATEGIES",
    "STRATEGIES",
    "Selection",
    "UNCERTAINTY_MEASURES",
    "acceptance_probability",
    "greedy_select",
    "mraru_select",
    "multilabel",
    "random_select",
    "select",
]


def select(
    strategy: str,
    score: Optional[ScoreFn],
    n_pool: int,
    k: int,
    rng: np.random.Generator,
    **params,
) -> Selection:
    """Select up to k pool positions with the named strategy.

    Parameters
    ----------
    strategy : {"mraru", "random", "least_confidence", "margin", "entropy"}
        "mraru" walks the pool lazily (see `mraru_select`) with the measure the caller chose.
        The greedy strategies score the whole pool in one call and take the top k. Their
        `score` must already use the measure the strategy names. "random" never calls `score`.
    score : callable or None
        ``score(positions) -> u`` with positions an int array of shape (m,) and u of shape (m,)
        in [0, 1]. None (cold start) makes every strategy a uniform random draw. No strategy
        calls it when k or n_pool is 0.
    n_pool, k : int
        Pool size and batch size; k > n_pool takes the whole pool.
    rng : numpy.random.Generator
        Source of randomness, created once from the round's seed.
    **params
        eps, tau, chunk_size and max_passes for "mraru". Other strategies ignore these four so
        one settings object can feed every strategy; any other name raises TypeError.

    Returns
    -------
    Selection
    """
    unknown = sorted(set(params) - set(MRARU_PARAMS))
    if unknown:
        raise TypeError(f"unknown sampler parameters {unknown}; expected some of {list(MRARU_PARAMS)}.")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {list(STRATEGIES)}.")
    check_pool_args(n_pool, k, rng)

    if strategy == "mraru":
        return mraru_select(score, n_pool, k, rng, **params)
    if strategy == "random" or score is None or k == 0 or n_pool == 0:
        indices = random_select(n_pool, k, rng)
        return Selection(indices, 0, indices.size, 1.0, None, passes=1)

    positions = np.arange(n_pool)
    u = check_uncertainty(score(positions), expected_len=n_pool)
    indices = greedy_select(u, k)
    mean_u = float(u[indices].mean()) if indices.size else None
    return Selection(indices, n_pool, indices.size, 1.0, mean_u, passes=1)
