import numpy as np
import pytest
from scipy import stats

from backend.sampling.mraru import acceptance_probability, mraru_select


class CountingScore:
    """Score function over fixed uncertainties that records every position it is asked for."""

    def __init__(self, u):
        self.u = np.asarray(u, dtype=float)
        self.calls = []

    def __call__(self, positions):
        self.calls.append(np.asarray(positions).copy())
        return self.u[positions]

    @property
    def scored(self):
        return np.concatenate(self.calls) if self.calls else np.empty(0, dtype=int)


def test_acceptance_probability_known_values():
    u = np.array([0.0, 0.25, 1.0])
    np.testing.assert_allclose(acceptance_probability(u, 0.0, 1.0), u)
    np.testing.assert_allclose(acceptance_probability(u, 0.0, 0.5), u**2)
    np.testing.assert_allclose(acceptance_probability(u, 0.2, 1.0), [0.2, 0.4, 1.0])
    np.testing.assert_allclose(acceptance_probability(u, 1.0, 0.3), [1.0, 1.0, 1.0])


def test_acceptance_probability_large_tau_near_one():
    a = acceptance_probability(np.array([0.01, 0.5]), 0.0, 1e4)
    assert a.min() > 0.999


@pytest.mark.parametrize(
    "eps, tau, match",
    [
        (-0.1, 1.0, r"eps must be in \[0, 1\]; got -0\.1"),
        (1.5, 1.0, r"eps must be in \[0, 1\]; got 1\.5"),
        (0.0, 0.0, r"tau must be a finite number > 0; got 0\.0"),
        (0.0, float("nan"), r"tau must be a finite number > 0; got nan"),
    ],
)
def test_acceptance_probability_invalid_params(eps, tau, match):
    with pytest.raises(ValueError, match=match):
        acceptance_probability(np.array([0.5]), eps, tau)


def test_acceptance_probability_invalid_u():
    with pytest.raises(ValueError, match=r"uncertainty values must be in \[0, 1\]; got min 0 and max 1\.5"):
        acceptance_probability(np.array([0.0, 1.5]), 0.0, 1.0)


def test_mraru_select_acceptance_follows_a():
    # Items with u = 0 and eps = 0 are never accepted, so with k = n_pool - 1 the first pass
    # always walks the whole pool: each item is accepted independently with probability a(x).
    u = np.array([0.0, 0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 1.0])
    tau = 0.5
    a = acceptance_probability(u, 0.0, tau)
    n_runs = 3000
    counts = np.zeros(u.size)
    for seed in range(n_runs):
        result = mraru_select(CountingScore(u), u.size, u.size - 1, np.random.default_rng(seed),
                              tau=tau, max_passes=1)
        counts[result.indices[: result.n_accepted]] += 1

    assert counts[0] == 0
    assert counts[1] == 0
    assert counts[-1] == n_runs
    inner = slice(2, u.size - 1)
    expected = n_runs * a[inner]
    variance = n_runs * a[inner] * (1 - a[inner])
    statistic = float(np.sum((counts[inner] - expected) ** 2 / variance))
    assert stats.chi2.sf(statistic, df=expected.size) > 0.001


def test_mraru_select_eps_sets_acceptance_floor():
    u = np.zeros(2000)
    accepted = draws = 0
    for seed in range(100):
        result = mraru_select(CountingScore(u), u.size, 20, np.random.default_rng(seed), eps=0.2)
        accepted += result.n_accepted
        draws += result.n_draws
        assert result.fallback_filled == 0
    assert accepted / draws == pytest.approx(0.2, abs=0.02)


def test_mraru_select_small_tau_is_greedy():
    u = np.full(100, 0.9)
    u[37] = 1.0
    picks = [
        mraru_select(CountingScore(u), 100, 1, np.random.default_rng(seed), tau=0.005).indices[0]
        for seed in range(50)
    ]
    assert set(picks) == {37}


def test_mraru_select_seeded_runs_repeat():
    u = np.random.default_rng(9).random(500)
    first = mraru_select(CountingScore(u), 500, 20, np.random.default_rng(42), tau=0.5, chunk_size=32)
    again = mraru_select(CountingScore(u), 500, 20, np.random.default_rng(42), tau=0.5, chunk_size=32)
    other = mraru_select(CountingScore(u), 500, 20, np.random.default_rng(43), tau=0.5, chunk_size=32)
    assert first.to_dict() == again.to_dict()
    assert first.indices.tolist() != other.indices.tolist()


def test_mraru_select_cold_start_uniform():
    n_pool, k, n_runs = 10, 3, 4000
    counts = np.zeros(n_pool)
    for seed in range(n_runs):
        result = mraru_select(None, n_pool, k, np.random.default_rng(seed))
        assert len(set(result.indices.tolist())) == k
        counts[result.indices] += 1
    assert stats.chisquare(counts).pvalue > 0.001
    assert result.n_scored == 0
    assert result.mean_uncertainty is None
    assert result.acceptance_rate == 1.0


def test_mraru_select_scores_lazily():
    score = CountingScore(np.ones(1000))
    result = mraru_select(score, 1000, 10, np.random.default_rng(0), chunk_size=16)
    assert len(score.calls) == 1
    assert score.calls[0].size == 16
    assert result.n_scored == 16
    assert result.n_draws == 10
    np.testing.assert_array_equal(result.indices, score.calls[0][:10])


def test_mraru_select_scores_chunk_by_chunk():
    u = np.full(1000, 0.5)
    score = CountingScore(u)
    result = mraru_select(score, 1000, 40, np.random.default_rng(5), chunk_size=8)
    assert all(call.size == 8 for call in score.calls)
    assert result.n_scored == 8 * len(score.calls)
    assert result.n_scored - result.n_draws < 8
    assert result.n_scored < 1000


def test_mraru_select_confident_pool_uses_fallback():
    u = np.zeros(300)
    u[[17, 5, 250]] = [0.3, 0.3, 0.2]
    score = CountingScore(u)
    result = mraru_select(score, 300, 4, np.random.default_rng(0), tau=1e-3, chunk_size=64, max_passes=5)
    assert result.passes == 5
    assert result.n_accepted == 0
    assert result.fallback_filled == 4
    assert result.n_draws == 5 * 300
    assert result.acceptance_rate == 0.0
    np.testing.assert_array_equal(result.indices[:3], [5, 17, 250])
    assert result.indices[3] not in (5, 17, 250)


def test_mraru_select_never_scores_twice():
    u = np.random.default_rng(2).random(400) * 0.2
    score = CountingScore(u)
    result = mraru_select(score, 400, 30, np.random.default_rng(1), tau=0.5, chunk_size=50, max_passes=4)
    assert result.passes > 1
    assert score.scored.size == np.unique(score.scored).size
    assert result.n_scored == score.scored.size
    assert len(set(result.indices.tolist())) == 30


def test_mraru_select_later_pass_walks_rejected_only():
    u = np.full(50, 0.1)
    result = mraru_select(CountingScore(u), 50, 45, np.random.default_rng(0), max_passes=20)
    assert result.passes > 1
    assert result.n_accepted + result.fallback_filled == 45
    assert len(set(result.indices.tolist())) == 45


@pytest.mark.parametrize("with_score", [True, False])
def test_mraru_select_k_above_pool(with_score):
    score = CountingScore(np.full(6, 0.5)) if with_score else None
    result = mraru_select(score, 6, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(result.indices), np.arange(6))
    assert result.n_accepted == 6
    assert result.n_scored == (6 if with_score else 0)
    assert result.mean_uncertainty == (pytest.approx(0.5) if with_score else None)


def test_mraru_select_k_zero():
    score = CountingScore(np.ones(5))
    result = mraru_select(score, 5, 0, np.random.default_rng(0))
    assert result.indices.size == 0
    assert score.calls == []


def test_mraru_select_empty_pool():
    result = mraru_select(CountingScore([]), 0, 3, np.random.default_rng(0))
    assert result.indices.size == 0


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_pool": -1}, ValueError, r"n_pool must be an int >= 0; got -1"),
        ({"k": 2.5}, ValueError, r"k must be an int >= 0; got 2\.5"),
        ({"rng": 0}, TypeError, r"np\.random\.default_rng\(seed\)"),
        ({"chunk_size": 0}, ValueError, r"chunk_size must be an int >= 1; got 0"),
        ({"max_passes": 0}, ValueError, r"max_passes must be an int >= 1; got 0"),
        ({"tau": -1.0}, ValueError, r"tau must be a finite number > 0; got -1\.0"),
    ],
)
def test_mraru_select_invalid_args(kwargs, error, match):
    args = {"score": CountingScore(np.ones(10)), "n_pool": 10, "k": 2, "rng": np.random.default_rng(0)}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        mraru_select(**args)


@pytest.mark.parametrize(
    "returned, match",
    [
        (lambda p: np.full((p.size, 2), 0.5), r"1-D array of shape \(n_samples,\); got shape"),
        (lambda p: np.full(p.size, np.nan), "NaN or infinite"),
        (lambda p: np.full(p.size, 2.0), r"in \[0, 1\]; got min 2 and max 2"),
        (lambda p: np.ones(1), r"score returned 1 uncertainties for 16 pool positions"),
    ],
)
def test_mraru_select_invalid_score_output(returned, match):
    with pytest.raises(ValueError, match=match):
        mraru_select(returned, 100, 5, np.random.default_rng(0), chunk_size=16)
