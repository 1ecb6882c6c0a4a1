import numpy as np
import pytest

from backend.sampling import Selection, greedy_select, random_select, select


def test_greedy_select_ties_break_by_index():
    u = np.array([0.2, 0.9, 0.5, 0.9, 0.5])
    np.testing.assert_array_equal(greedy_select(u, 3), [1, 3, 2])


def test_greedy_select_k_above_pool():
    np.testing.assert_array_equal(greedy_select([0.1, 0.3], 5), [1, 0])


def test_greedy_select_invalid_k():
    with pytest.raises(ValueError, match=r"k must be an int >= 0; got -1"):
        greedy_select([0.1], -1)


def test_random_select_distinct_and_seeded():
    first = random_select(100, 10, np.random.default_rng(3))
    again = random_select(100, 10, np.random.default_rng(3))
    np.testing.assert_array_equal(first, again)
    assert len(set(first.tolist())) == 10
    assert first.max() < 100


def test_random_select_k_above_pool():
    picks = random_select(4, 10, np.random.default_rng(0))
    np.testing.assert_array_equal(np.sort(picks), np.arange(4))


def test_random_select_rejects_legacy_random_state():
    with pytest.raises(TypeError, match="numpy.random.Generator; got RandomState"):
        random_select(10, 2, np.random.RandomState(0))


def test_select_greedy_scores_whole_pool():
    u = np.linspace(0, 1, 50)
    calls = []

    def score(positions):
        calls.append(positions.copy())
        return u[positions]

    result = select("margin", score, 50, 3, np.random.default_rng(0), eps=0.1, tau=0.5)
    assert isinstance(result, Selection)
    np.testing.assert_array_equal(result.indices, [49, 48, 47])
    assert result.n_scored == 50
    assert len(calls) == 1
    np.testing.assert_array_equal(calls[0], np.arange(50))
    assert result.mean_uncertainty == pytest.approx(u[[49, 48, 47]].mean())


def test_select_random_never_scores():
    def score(positions):
        raise AssertionError("random sampling must not score")

    result = select("random", score, 30, 5, np.random.default_rng(1))
    assert result.n_scored == 0
    assert result.mean_uncertainty is None
    assert result.indices.size == 5


def test_select_greedy_cold_start_is_random():
    result = select("entropy", None, 30, 5, np.random.default_rng(1))
    expected = random_select(30, 5, np.random.default_rng(1))
    np.testing.assert_array_equal(result.indices, expected)
    assert result.n_scored == 0


def test_select_mraru_passes_params():
    u = np.zeros(20)
    result = select("mraru", lambda p: u[p], 20, 2, np.random.default_rng(0), max_passes=2)
    assert result.passes == 2
    assert result.fallback_filled == 2


def test_select_unknown_strategy():
    with pytest.raises(ValueError, match=r"unknown strategy 'greedy'; expected one of"):
        select("greedy", None, 10, 2, np.random.default_rng(0))


def test_select_unknown_param():
    with pytest.raises(TypeError, match=r"unknown sampler parameters \['temperature'\]"):
        select("mraru", None, 10, 2, np.random.default_rng(0), temperature=1.0)


def test_select_score_wrong_length():
    with pytest.raises(ValueError, match="score returned 3 uncertainties for 10 pool positions"):
        select("margin", lambda p: np.zeros(3), 10, 2, np.random.default_rng(0))


def test_selection_to_dict_json_safe():
    import json

    result = select("margin", lambda p: np.full(p.size, 0.5), 5, 2, np.random.default_rng(0))
    record = result.to_dict()
    assert json.loads(json.dumps(record)) == record
    assert record["indices"] == [0, 1]


@pytest.mark.parametrize("n_pool, k", [(0, 3), (10, 0)])
def test_select_greedy_empty_never_scores(n_pool, k):
    def score(positions):
        raise AssertionError("an empty selection must not score")

    result = select("least_confidence", score, n_pool, k, np.random.default_rng(0))
    assert result.indices.size == 0
    assert result.n_scored == 0
