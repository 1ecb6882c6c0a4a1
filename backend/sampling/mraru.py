"""M-RARU: randomized accept/reject uncertainty sampling over a lazily scored pool.

An item x with uncertainty u(x) in [0, 1] is accepted with probability
``a(x) = eps + (1 - eps) * u(x) ** (1 / tau)``. The pool is walked in a seeded random order and
scored a chunk at a time, so a batch costs about ``k / E[a(x)]`` scored items instead of the
whole pool. This reading of Luccioli et al., "LLM on a Budget: Active Knowledge Distillation for
Efficient Classification of Large Text Corpora" (arXiv 2511.11574, 2025) is the project's own:
eps, tau, the chunk size and the bound on passes are all parameters.
"""

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

# A score function maps pool positions, int array of shape (m,), to uncertainties of shape (m,).
ScoreFn = Callable[[np.ndarray], np.ndarray]

# Tolerance for uncertainties returned by a score function before they are clipped to [0, 1].
U_ATOL = 1e-9


@dataclass(frozen=True, eq=False)
class Selection:
    """Result of one selection round.

    Attributes
    ----------
    indices : ndarray of shape (n_selected,)
        Selected pool positions: accepted items in acceptance order, then fallback items.
    n_scored : int
        Items whose uncertainty was computed (each at most once per call).
    n_accepted : int
        Items accepted by a uniform draw; fallback items are not counted.
    acceptance_rate : float
        ``n_accepted / n_draws``, or 1.0 when no draw was needed (k = 0, k >= n_pool, or a
        strategy that takes its picks without draws).
    mean_uncertainty : float or None
        Mean uncertainty of all selected items, fallback items included; None when nothing was
        scored (cold start or random sampling).
    passes : int
        Walks over the pool (pass 2 onwards walks only items rejected so far).
    fallback_filled : int
        Items added by the fallback after ``max_passes`` walks ended short of k.
    n_draws : int
        Uniform draws made, one per walked item per pass.
    """

    indices: np.ndarray
    n_scored: int
    n_accepted: int
    acceptance_rate: float
    mean_uncertainty: Optional[float]
    passes: int
    fallback_filled: int = 0
    n_draws: int = 0

    def to_dict(self) -> dict:
        """Return the round's record with JSON-safe values (lists, ints, floats, None)."""
        return {
            "indices": [int(i) for i in self.indices],
            "n_scored": int(self.n_scored),
            "n_accepted": int(self.n_accepted),
            "acceptance_rate": float(self.acceptance_rate),
            "mean_uncertainty": None if self.mean_uncertainty is None else float(self.mean_uncertainty),
            "passes": int(self.passes),
            "fallback_filled": int(self.fallback_filled),
            "n_draws": int(self.n_draws),
        }


def acceptance_probability(u, eps: float, tau: float) -> np.ndarray:
    """Compute the M-RARU acceptance probability ``eps + (1 - eps) * u ** (1 / tau)``.

    Parameters
    ----------
    u : array-like of shape (n_samples,)
        Uncertainties in [0, 1].
    eps : float
        Floor on the acceptance probability, in [0, 1]; eps > 0 bounds the walk.
    tau : float
        Temperature, > 0. tau < 1 leans towards greedy uncertainty sampling and large tau
        towards random sampling.

    Returns
    -------
    a : ndarray of shape (n_samples,)
        Acceptance probabilities in [eps, 1].
    """
    check_eps_tau(eps, tau)
    u = check_uncertainty(u, expected_len=None)
    return eps + (1.0 - eps) * np.power(u, 1.0 / tau)


def check_eps_tau(eps: float, tau: float) -> None:
    """Raise ValueError unless 0 <= eps <= 1 and tau > 0 (both finite)."""
    if not (np.isfinite(eps) and 0.0 <= eps <= 1.0):
        raise ValueError(f"eps must be in [0, 1]; got {eps!r}. Use 0 for the plain M-RARU rule.")
    if not (np.isfinite(tau) and tau > 0.0):
        raise ValueError(f"tau must be a finite number > 0; got {tau!r}. Use 1 for the plain rule.")


def check_uncertainty(u, expected_len: Optional[int]) -> np.ndarray:
    """Validate uncertainties (1-D, finite, in [0, 1]) and return them clipped as floats."""
    u = np.asarray(u, dtype=float)
    if u.ndim != 1:
        raise ValueError(
            f"uncertainty must be a 1-D array of shape (n_samples,); got shape {u.shape}. "
            "Reduce probabilities with a measure from backend.sampling.uncertainty first."
        )
    if expected_len is not None and u.shape[0] != expected_len:
        raise ValueError(
            f"score returned {u.shape[0]} uncertainties for {expected_len} pool positions; "
            "it must return one value per position it is given."
        )
    if not np.all(np.isfinite(u)):
        raise ValueError("uncertainty contains NaN or infinite values; pass finite values in [0, 1].")
    if u.size and (u.min() < -U_ATOL or u.max() > 1.0 + U_ATOL):
        raise ValueError(
            f"uncertainty values must be in [0, 1]; got min {u.min():.6g} and max {u.max():.6g}."
        )
    return np.clip(u, 0.0, 1.0)


def check_pool_args(n_pool, k, rng) -> None:
    """Raise TypeError or ValueError for an invalid pool size, batch size or generator."""
    for name, value in (("n_pool", n_pool), ("k", k)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0; got {value!r}.")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"rng must be a numpy.random.Generator; got {type(rng).__name__}. "
            "Create one with np.random.default_rng(seed)."
        )


def mraru_select(
    score: Optional[ScoreFn],
    n_pool: int,
    k: int,
    rng: np.random.Generator,
    *,
    eps: float = 0.0,
    tau: float = 1.0,
    chunk_size: int = 256,
    max_passes: int = 20,
) -> Selection:
    """Select up to k pool positions with M-RARU.

    The pool is walked in a random order drawn from `rng`. The walk calls `score` on one chunk
    of not yet scored positions at a time, only when it reaches them, and makes one uniform
    draw per walked item, accepting it with probability ``acceptance_probability(u, eps, tau)``.
    It stops at k accepted items. If a pass ends short, the rejected items are walked again in a
    new random order, reusing their cached scores, so no item is scored twice in one call.

    Fallback: when `max_passes` passes end short of k, the rest of the batch is filled with the
    rejected items of highest uncertainty, and ties go to the lower pool position.
    `Selection.fallback_filled` counts them. The bound matters when a confident student drives
    a(x) towards 0 and eps is 0.

    Parameters
    ----------
    score : callable or None
        ``score(positions) -> u``: positions is an int array of shape (m,), u an array of shape
        (m,) in [0, 1] under the measure the caller chose. None means cold start: a(x) = 1, so
        the batch is a uniform random sample and nothing is scored.
    n_pool : int
        Number of unlabelled items; positions run from 0 to n_pool - 1.
    k : int
        Batch size. When k >= n_pool the whole pool is taken in a random order, without draws;
        it is scored once (if `score` is given) only to report the mean uncertainty.
    rng : numpy.random.Generator
        Source of the walk orders and draws; the same seed repeats the selection exactly.
    eps, tau : float
        Parameters of the acceptance probability.
    chunk_size : int
        Positions scored per call to `score`; the walk scores at most chunk_size - 1 items
        beyond the last one it draws for.
    max_passes : int
        Bound on the walks over the pool before the fallback.

    Returns
    -------
    Selection
    """
    check_pool_args(n_pool, k, rng)
    check_eps_tau(eps, tau)
    for name, value in (("chunk_size", chunk_size), ("max_passes", max_passes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an int >= 1; got {value!r}.")

    if k >= n_pool:
        return _take_whole_pool(score, n_pool, rng)
    if score is None:
        indices = rng.permutation(n_pool)[:k].astype(np.int64)
        return Selection(indices, 0, k, 1.0, None, passes=1, n_draws=k)

    u_cache = np.full(n_pool, np.nan)
    accepted: list[np.ndarray] = []
    n_accepted = n_draws = n_scored = passes = 0
    pending = rng.permutation(n_pool)

    while n_accepted < k and passes < max_passes:
        passes += 1
        rejected: list[np.ndarray] = []
        for start in range(0, pending.size, chunk_size):
            chunk = pending[start : start + chunk_size]
            n_scored += _score_missing(score, chunk, u_cache)
            a = acceptance_probability(u_cache[chunk], eps, tau)
            is_accepted = rng.random(chunk.size) < a

            need = k - n_accepted
            n_walked = chunk.size
            if np.count_nonzero(is_accepted) >= need:
                # The walk stops at the item that completes the batch.
                n_walked = int(np.flatnonzero(is_accepted)[need - 1]) + 1
            walked, walked_accepted = chunk[:n_walked], is_accepted[:n_walked]
            accepted.append(walked[walked_accepted])
            rejected.append(walked[~walked_accepted])
            n_accepted += int(np.count_nonzero(walked_accepted))
            n_draws += n_walked
            if n_accepted >= k:
                break
        rejected_positions = np.concatenate(rejected) if rejected else np.empty(0, dtype=int)
        pending = rejected_positions[rng.permutation(rejected_positions.size)]

    indices = np.concatenate(accepted) if accepted else np.empty(0, dtype=int)
    fallback_filled = 0
    if n_accepted < k:
        # Every rejected item was walked, hence scored; rank them by cached uncertainty.
        candidates = np.sort(pending)
        order = np.argsort(-u_cache[candidates], kind="stable")
        fill = candidates[order[: k - n_accepted]]
        fallback_filled = int(fill.size)
        indices = np.concatenate([indices, fill])

    return Selection(
        indices=indices.astype(np.int64),
        n_scored=n_scored,
        n_accepted=n_accepted,
        acceptance_rate=n_accepted / n_draws if n_draws else 1.0,
        mean_uncertainty=float(u_cache[indices].mean()) if indices.size else None,
        passes=passes,
        fallback_filled=fallback_filled,
        n_draws=n_draws,
    )


def _score_missing(score: ScoreFn, chunk: np.ndarray, u_cache: np.ndarray) -> int:
    """Score the positions of `chunk` not yet in `u_cache`; return how many were scored."""
    missing = chunk[np.isnan(u_cache[chunk])]
    if missing.size:
        u_cache[missing] = check_uncertainty(score(missing), expected_len=missing.size)
    return int(missing.size)


def _take_whole_pool(score: Optional[ScoreFn], n_pool: int, rng: np.random.Generator) -> Selection:
    """Return the whole pool in a random order (used when k >= n_pool)."""
    indices = rng.permutation(n_pool).astype(np.int64)
    mean_u = None
    if score is not None and n_pool:
        mean_u = float(check_uncertainty(score(indices), expected_len=n_pool).mean())
    n_scored = n_pool if score is not None else 0
    return Selection(indices, n_scored, n_pool, 1.0, mean_u, passes=0)
