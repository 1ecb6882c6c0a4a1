"""One selection round on a 100,000-task pool with the trained default student: M-RARU versus greedy."""

import time

import numpy as np

from backend.config import Settings
from backend.labels import parse_label_config
from backend.prediction import pool_uncertainty
from backend.sampling import select
from backend.store import ProjectStore
from tests.benchmarks.conftest import LABEL_CONFIG, PROJECT_ID, VALUE_KEY

POOL_SIZE = 100_000
MRARU_ROUNDS = 5


def timed_round(strategy: str, measure: str, spec, bundle, texts_by_key, round_no: int, settings: Settings):
    """Run `select` the way `backend.loop.run_round` does and return the selection and its wall time in seconds."""
    def score(positions):
        return pool_uncertainty(spec, bundle, texts_by_key, np.asarray(positions), measure)

    rng = np.random.default_rng([settings.seed, PROJECT_ID, round_no])
    started = time.perf_counter()
    selection = select(strategy, score, POOL_SIZE, settings.batch_size, rng, eps=settings.eps, tau=settings.tau)
    return selection, time.perf_counter() - started


def test_bench_selection_round_100k_pool(ours, corpus, report):
    settings = Settings()
    spec = parse_label_config(LABEL_CONFIG)
    bundle = ProjectStore(ours.model_dir).load_latest(PROJECT_ID)
    repeats = -(-POOL_SIZE // len(corpus.texts))
    texts_by_key = {VALUE_KEY: (corpus.texts * repeats)[:POOL_SIZE]}

    mraru = [timed_round("mraru", settings.uncertainty, spec, bundle, texts_by_key, round_no, settings)
             for round_no in range(1, MRARU_ROUNDS + 1)]
    greedy, greedy_seconds = timed_round(settings.uncertainty, settings.uncertainty, spec, bundle, texts_by_key,
                                         1, settings)

    mraru_seconds = float(np.median([seconds for _, seconds in mraru]))
    report["selection_100k_pool"] = {
        "student": bundle.student, "k": settings.batch_size, "eps": settings.eps, "tau": settings.tau,
        "measure": settings.uncertainty,
        "mraru_rounds": [{"seconds": round(seconds, 3), "scored": s.n_scored, "accepted": s.n_accepted,
                          "fallback": s.fallback_filled, "passes": s.passes,
                          "mean_u": None if s.mean_uncertainty is None else round(s.mean_uncertainty, 3)}
                         for s, seconds in mraru],
        "mraru_median_s": round(mraru_seconds, 3),
        "greedy_s": round(greedy_seconds, 3),
        "greedy_scored": greedy.n_scored,
        "greedy_mean_u": round(greedy.mean_uncertainty, 3),
        "greedy_over_mraru_time": round(greedy_seconds / mraru_seconds, 1),
    }
    assert greedy.n_scored == POOL_SIZE
    assert all(s.indices.size == settings.batch_size for s, _ in mraru)
    assert all(s.n_scored < POOL_SIZE for s, _ in mraru)
