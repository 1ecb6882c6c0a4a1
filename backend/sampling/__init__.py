"""Selection strategies: M-RARU and the baselines it is measured against.

All strategies share one contract through `select`: the caller passes ``score(positions) -> u``,
which returns uncertainties in [0, 1] under the measure the caller chose (see
`backend.sampling.uncertainty`), or None before a usable student exists.
"""

from typing import Optional

import numpy as np

from backend.sampling.baselines import epsilon_uncertainty_select, greedy_select, power_select, random_select
from backend.sampling.mraru import (
    ScoreFn,
    Selection,
    acceptance_probability,
    check_pool_args,
    check_uncertainty,
    mraru_select,
)
from backend.sampling.uncertainty import UNCERTAINTY_MEASURES, multilabel

STRATEGIES = ("mraru", "random", "least_confidence", "margin", "entropy", "epsilon_uncertainty", "power")
GREEDY_STRATEGIES = ("least_confidence", "margin", "entropy")
MRARU_PARAMS = ("eps", "tau", "chunk_size", "max_passes")
# Parameters `select` accepts: M-RARU's, plus the exponent of power sampling.
SELECT_PARAMS = MRARU_PARAMS + ("power",)

__all__ = [
    "GREEDY_STRATEGIES",
    "STRATEGIES",
    "Selection",
    "UNCERTAINTY_MEASURES",
    "acceptance_probability",
    "epsilon_uncertainty_select",
    "greedy_select",
    "mraru_select",
    "multilabel",
    "power_select",
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
    strategy : {"mraru", "random", "least_confidence", "margin", "entropy", "epsilon_uncertainty", "power"}
        "mraru" walks the pool lazily (see `mraru_select`) with the measure the caller chose.
        The greedy strategies score the whole pool in one call and take the top k. Their
        `score` must already use the measure the strategy names. "random" never calls `score`.
        "epsilon_uncertainty" (see `epsilon_uncertainty_select`, exploration rate `eps`) and
        "power" (see `power_select`, exponent `power`) also score the whole pool in one call,
        under the measure the caller chose.
    score : callable or None
        ``score(positions) -> u`` with positions an int array of shape (m,) and u of shape (m,)
        in [0, 1]. None (cold start) makes every strategy a uniform random draw. No strategy
        calls it when k or n_pool is 0.
    n_pool, k : int
        Pool size and batch size; k > n_pool takes the whole pool.
    rng : numpy.random.Generator
        Source of randomness, created once from the round's seed.
    **params
        eps, tau, chunk_size and max_passes for "mraru"; eps (default 0.05) for
        "epsilon_uncertainty"; power (default 1.0) for "power". A strategy ignores the names it
        does not use, so one settings object can feed every strategy; any other name raises
        TypeError.

    Returns
    -------
    Selection
    """
    unknown = sorted(set(params) - set(SELECT_PARAMS))
    if unknown:
        raise TypeError(f"unknown sampler parameters {unknown}; expected some of {list(SELECT_PARAMS)}.")
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; expected one of {list(STRATEGIES)}.")
    check_pool_args(n_pool, k, rng)

    if strategy == "mraru":
        return mraru_select(score, n_pool, k, rng, **{name: params[name] for name in MRARU_PARAMS if name in params})
    if strategy == "random" or score is None or k == 0 or n_pool == 0:
        indices = random_select(n_pool, k, rng)
        return Selection(indices, 0, indices.size, 1.0, None, passes=1)

    positions = np.arange(n_pool)
    u = check_uncertainty(score(positions), expected_len=n_pool)
    if strategy == "epsilon_uncertainty":
        indices = epsilon_uncertainty_select(u, k, params.get("eps", 0.05), rng)
    elif strategy == "power":
        indices = power_select(u, k, rng, params.get("power", 1.0))
    else:
        indices = greedy_select(u, k)
    mean_u = float(u[indices].mean()) if indices.size else None
    return Selection(indices, n_pool, indices.size, 1.0, mean_u, passes=1)
