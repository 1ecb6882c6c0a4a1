import numpy as np
import pytest

from backend.sampling import epsilon_uncertainty_select, greedy_select, power_select, select


def test_epsilon_uncertainty_select_eps_zero_is_greedy():
    u = np.random.default_rng(0).random(50)
    picks = epsilon_uncertainty_select(u, 7, 0.0, np.random.default_rng(1))
    np.testing.assert_array_equal(picks, greedy_select(u, 7))


def test_epsilon_uncertainty_select_eps_one_is_random_and_distinct():
    u = np.linspace(0.0, 1.0, 200)
    picks = epsilon_uncertainty_select(u, 50, 1.0, np.random.default_rng(2))
    assert len(set(picks.tolist())) == 50
    # Greedy would take positions 150..199 only; random picks spread over the pool.
    assert np.count_nonzero(picks < 150) > 20


def test_epsilon_uncertainty_select_seeded():
    u = np.random.default_rng(0).random(100)
    first = epsilon_uncertainty_select(u, 20, 0.3, np.random.default_rng(5))
    again = epsilon_uncertainty_select(u, 20, 0.3, np.random.default_rng(5))
    np.testing.assert_array_equal(first, again)


def test_epsilon_uncertainty_select_random_share_matches_eps():
    u = np.linspace(0.0, 1.0, 1000)
    top = set(greedy_select(u, 100).tolist())
    outside = [np.count_nonzero(~np.isin(epsilon_uncertainty_select(u, 100, 0.3, np.random.default_rng(seed)),
                                         list(top)))
               for seed in range(40)]
    # Each exploring pick lands outside the greedy top 100 with probability 0.9.
    assert np.mean(outside) == pytest.approx(100 * 0.3 * 0.9, rel=0.15)


def test_epsilon_uncertainty_select_k_above_pool():
    picks = epsilon_uncertainty_select([0.2, 0.5, 0.1], 10, 0.5, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(picks), [0, 1, 2])


def test_epsilon_uncertainty_select_invalid_eps():
    with pytest.raises(ValueError, match=r"eps must be in \[0, 1\] for epsilon_uncertainty; got 1.5"):
        epsilon_uncertainty_select([0.1, 0.2], 1, 1.5, np.random.default_rng(0))


def test_power_select_seeded_and_distinct():
    u = np.random.default_rng(0).random(300)
    first = power_select(u, 40, np.random.default_rng(9), power=2.0)
    again = power_select(u, 40, np.random.default_rng(9), power=2.0)
    np.testing.assert_array_equal(first, again)
    assert len(set(first.tolist())) == 40


def test_power_select_frequency_proportional_to_u_power():
    u = np.array([0.1, 0.3])
    rng = np.random.default_rng(4)
    firsts = np.array([power_select(u, 1, rng, power=1.0)[0] for _ in range(4000)])
    assert np.mean(firsts == 1) == pytest.approx(0.75, abs=0.03)
    firsts = np.array([power_select(u, 1, rng, power=2.0)[0] for _ in range(4000)])
    assert np.mean(firsts == 1) == pytest.approx(0.9, abs=0.03)


def test_power_select_large_power_is_greedy():
    u = np.linspace(0.05, 1.0, 60)
    picks = power_select(u, 5, np.random.default_rng(0), power=500.0)
    np.testing.assert_array_equal(np.sort(picks), np.arange(55, 60))


def test_power_select_zero_uncertainty_comes_last():
    u = np.array([0.0, 0.4, 0.0, 0.2, 0.0])
    picks = power_select(u, 4, np.random.default_rng(3))
    assert set(picks[:2].tolist()) == {1, 3}
    assert set(picks[2:].tolist()) <= {0, 2, 4}


def test_power_select_invalid_power():
    with pytest.raises(ValueError, match=r"power must be a finite number > 0; got 0"):
        power_select([0.1, 0.2], 1, np.random.default_rng(0), power=0)


@pytest.mark.parametrize("strategy", ["epsilon_uncertainty", "power"])
def test_select_new_baselines_score_whole_pool_once(strategy):
    u = np.linspace(0.0, 1.0, 40)
    calls = []

    def score(positions):
        calls.append(positions.copy())
        return u[positions]

    result = select(strategy, score, 40, 6, np.random.default_rng(0), eps=0.2, tau=0.5, power=3.0)
    assert len(calls) == 1
    np.testing.assert_array_equal(calls[0], np.arange(40))
    assert result.n_scored == 40
    assert len(set(result.indices.tolist())) == 6
    assert result.mean_uncertainty == pytest.approx(u[result.indices].mean())


def test_select_epsilon_uncertainty_uses_eps():
    u = np.linspace(0.0, 1.0, 40)
    result = select("epsilon_uncertainty", lambda p: u[p], 40, 6, np.random.default_rng(0), eps=0.0)
    np.testing.assert_array_equal(result.indices, greedy_select(u, 6))


def test_select_power_uses_power():
    u = np.linspace(0.05, 1.0, 40)
    expected = power_select(u, 6, np.random.default_rng(8), power=4.0)
    result = select("power", lambda p: u[p], 40, 6, np.random.default_rng(8), power=4.0)
    np.testing.assert_array_equal(result.indices, expected)


@pytest.mark.parametrize("strategy", ["epsilon_uncertainty", "power"])
def test_select_new_baselines_cold_start_is_random(strategy):
    result = select(strategy, None, 30, 5, np.random.default_rng(1))
    assert result.n_scored == 0
    assert result.indices.size == 5


def test_select_mraru_ignores_power():
    u = np.full(50, 0.5)
    with_power = select("mraru", lambda p: u[p], 50, 5, np.random.default_rng(2), power=7.0)
    without = select("mraru", lambda p: u[p], 50, 5, np.random.default_rng(2))
    np.testing.assert_array_equal(with_power.indices, without.indices)
