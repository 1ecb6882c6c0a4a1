"""The simulator's LLM teacher against the fake OpenAI-compatible server, over real HTTP on 127.0.0.1."""

import pytest

from backend.datasets import Dataset
from backend.simulate.corpora import split_corpus
from backend.simulate.fitting import make_fitter
from backend.simulate.runner import RunConfig, run_simulation
from backend.simulate.teachers import make_teacher
from tests.support.fake_openai import start_fake_openai

CLASSES = ("negative", "positive")


@pytest.fixture(scope="module")
def fake():
    server = start_fake_openai()
    yield server
    server.stop()


@pytest.fixture
def llm_env(fake, monkeypatch):
    fake.control(reset_stats=True, mode="correct")
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("MRARU_TEACHER_MODEL", "fake-model")
    monkeypatch.setenv("MRARU_TEACHER_TIMEOUT", "5")
    monkeypatch.setenv("MRARU_TEACHER_MAX_RETRIES", "1")
    return fake


def marked_corpus(n=60) -> Dataset:
    """Texts carrying the fake server's gold marker, so the fake teacher answers correctly."""
    labels = [CLASSES[i % 2] for i in range(n)]
    words = {"negative": "dull slow", "positive": "great fun"}
    texts = [f"{words[label]} film {i} [gold:{label}]" for i, label in enumerate(labels)]
    return Dataset(texts, labels, CLASSES, "marked")


def test_llm_teacher_labels_and_rerun_uses_cache(llm_env, tmp_path):
    split = split_corpus(marked_corpus(), test_fraction=0.25, split_seed=0)
    cache = tmp_path / "teacher.sqlite3"
    first = make_teacher("llm", split.pool_texts, split.pool_labels, split.classes, seed=0, cache_path=cache)
    try:
        answers = first.label(range(10))
    finally:
        first.close()
    assert answers == split.pool_labels[:10]
    asked = llm_env.stats()["generations"]
    assert asked == 10

    again = make_teacher("llm", split.pool_texts, split.pool_labels, split.classes, seed=0, cache_path=cache)
    try:
        assert again.label(range(10)) == answers
    finally:
        again.close()
    assert llm_env.stats()["generations"] == asked


def test_llm_teacher_invalid_answers_are_paid_not_trained(llm_env, tmp_path):
    llm_env.control(mode="out_of_set")
    split = split_corpus(marked_corpus(), test_fraction=0.25, split_seed=0)
    teacher = make_teacher("llm", split.pool_texts, split.pool_labels, split.classes, seed=0,
                           cache_path=tmp_path / "teacher.sqlite3")
    try:
        record = run_simulation(split, teacher, RunConfig(strategy="mraru", student="lr", seed_size=10,
                                                          batch_size=10, budget=20), make_fitter("lr"))
    finally:
        teacher.close()
    assert record["labels_spent"] == 20
    assert teacher.n_invalid == 20
    assert record["points"][-1]["n_train"] == 0


def test_llm_teacher_needs_base_url(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(ValueError, match=r"--teacher llm needs OPENAI_BASE_URL"):
        make_teacher("llm", ["a"], ["x"], ("x", "y"), seed=0, cache_path=tmp_path / "c.sqlite3")
