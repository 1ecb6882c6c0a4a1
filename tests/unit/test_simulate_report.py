import csv
import importlib.util
import json
import os
import random
import subprocess
import sys

import pytest

from backend.cli import main
from backend.simulate.cli import parse_datasets, parse_students
from backend.simulate.report import (compare_auc, curve_auc, grid_table, labels_to_reach, markdown_table,
                                     summarize, value_at)


def points(*pairs):
    return [{"labels": x, "accuracy": y, "macro_f1": y / 2} for x, y in pairs]


def fake_run(label, seed, pairs, budget=300):
    return {"config": {"label": label, "seed": seed, "budget": budget}, "points": points(*pairs),
            "rounds": [{"n_scored": 0, "select_s": 0.0}, {"n_scored": 10, "select_s": 0.5}], "seconds": 1.0}


def test_curve_auc_is_trapezoid_mean():
    assert curve_auc(points((100, 0.5), (200, 0.7), (400, 0.7))) == pytest.approx((0.6 * 100 + 0.7 * 200) / 300)
    assert curve_auc(points((100, 0.4))) == pytest.approx(0.4)


def test_labels_to_reach_and_value_at():
    curve = points((100, 0.5), (200, 0.8), (300, 0.9))
    assert labels_to_reach(curve, 0.8) == 200
    assert labels_to_reach(curve, 0.95) is None
    assert value_at(curve, 300) == 0.9
    assert value_at(curve, 250) is None


def test_summarize_saving_against_random():
    reference = {"accuracy": 1.0, "macro_f1": 1.0, "n_train": 1000}
    runs = [fake_run("random", 0, [(100, 0.5), (200, 0.9), (300, 0.96)]),
            fake_run("random", 1, [(100, 0.5), (200, 0.96), (300, 0.97)]),
            fake_run("mraru", 0, [(100, 0.96), (200, 0.99), (300, 0.99)]),
            fake_run("mraru", 1, [(100, 0.95), (200, 0.97), (300, 0.99)])]
    rows = {row["strategy"]: row for row in summarize(runs, reference)}
    assert rows["random"]["labels@95%"] == 250.0
    assert rows["mraru"]["labels@95%"] == 100.0
    assert rows["mraru"]["saving@95%"] == "60%"
    # Random never reaches 99%: the saving is a lower bound against the budget.
    assert rows["mraru"]["labels@99%"] == 250.0
    assert rows["mraru"]["saving@99%"] == ">17%"
    assert rows["mraru"]["acc@100"] == {"mean": 0.955, "sd": pytest.approx(0.0071, abs=1e-4)}
    assert rows["mraru"]["scored_per_round"] == 10.0
    assert rows["mraru"]["select_seconds"] == 0.5
    table = markdown_table(list(rows.values()), reference, "toy")
    assert "| mraru | 0.976±0.009 |" in table and "| >300 |" in table


def test_cli_simulate_writes_runs_curves_summary_and_plot(tmp_path):
    rows = [{"text": f"{word} {word} weather item{i}", "label": label}
            for i in range(90) for word, label in [(("sun", "rain", "snow")[i % 3], ("a", "b", "c")[i % 3])]]
    corpus = tmp_path / "toy.jsonl"
    corpus.write_text("\n".join(json.dumps(row) for row in rows))
    out = tmp_path / "out"
    args = ["simulate", "--dataset", f"{corpus}@40", "--strategy", "mraru,random", "--student", "lr",
            "--seeds", "2", "--seed-size", "10", "--batch-size", "10", "--out", str(out)]
    assert main(args) == 0

    folder = out / "toy" / "gold" / "lr-tfidf"
    summary = json.loads((folder / "summary.json").read_text())
    assert {row["strategy"] for row in summary["rows"]} == {"mraru(eps=0.05,tau=0.25)", "random"}
    assert summary["reference"]["n_train"] == 72
    with open(folder / "curves.csv", newline="") as handle:
        curve = list(csv.DictReader(handle))
    assert {row["seed"] for row in curve} == {"0", "1"}
    assert max(int(row["labels"]) for row in curve) == 40
    assert len(list((folder / "runs").glob("*.json"))) == 4
    # The plot needs the optional [simulate] extra; without matplotlib it is skipped with a warning.
    if importlib.util.find_spec("matplotlib") is not None:
        assert (folder / "toy.png").stat().st_size > 1000
    else:
        assert not (folder / "toy.png").exists()
    assert "random" in (out / "summary.md").read_text()
    assert "| toy (2 seeds, 40) | lr/tfidf |" in (out / "grid.md").read_text()

    # A second call reuses the stored runs and gives the same summary.
    stored = (folder / "summary.json").read_text()
    assert main(args) == 0
    assert json.loads((folder / "summary.json").read_text())["rows"] == json.loads(stored)["rows"]


def test_cli_simulate_resumes_after_interrupt(tmp_path, monkeypatch):
    from backend.simulate import cli as simulate_cli

    corpus = weather_corpus(tmp_path / "toy.jsonl")
    out = tmp_path / "out"
    args = ["simulate", "--dataset", f"{corpus}@30", "--strategy", "random", "--student", "lr",
            "--seeds", "3", "--seed-size", "10", "--batch-size", "10", "--out", str(out)]
    real_run, calls = simulate_cli._one_run, []

    def run_then_fail(*run_args):
        calls.append(run_args)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_run(*run_args)

    monkeypatch.setattr(simulate_cli, "_one_run", run_then_fail)
    with pytest.raises(KeyboardInterrupt):
        main(args)
    runs = out / "toy" / "gold" / "lr-tfidf" / "runs"
    assert [path.name for path in runs.glob("*.json")] == ["random-lr-tfidf-b10-n30-seed0.json"]

    # The next call reuses the stored run and runs only the two that did not finish.
    calls.clear()

    def run_and_record(*run_args):
        calls.append(run_args)
        return real_run(*run_args)

    monkeypatch.setattr(simulate_cli, "_one_run", run_and_record)
    assert main(args) == 0
    assert [run_args[1].seed for run_args in calls] == [1, 2]
    assert len(list(runs.glob("*.json"))) == 3


def weather_corpus(path, n=90):
    rows = [{"text": f"{word} {word} weather item{i}", "label": label}
            for i in range(n) for word, label in [(("sun", "rain", "snow")[i % 3], ("a", "b", "c")[i % 3])]]
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def test_cli_simulate_student_grid(tmp_path):
    corpus = weather_corpus(tmp_path / "toy.jsonl")
    out = tmp_path / "out"
    args = ["simulate", "--dataset", f"{corpus}@30", "--strategy", "mraru,random,margin", "--student", "lr,lda",
            "--features", "tfidf", "--seeds", "2", "--seed-size", "10", "--batch-size", "10", "--out", str(out)]
    assert main(args) == 0

    for student in ("lr", "lda"):
        summary = json.loads((out / "toy" / "gold" / f"{student}-tfidf" / "summary.json").read_text())
        assert summary["meta"]["student"] == student
        assert len(list((out / "toy" / "gold" / f"{student}-tfidf" / "runs").glob("*.json"))) == 6
    grid = json.loads((out / "grid.json").read_text())
    assert [(item["meta"]["student"], item["meta"]["features"]) for item in grid] == [("lr", "tfidf"), ("lda", "tfidf")]
    lines = [line for line in (out / "grid.md").read_text().splitlines() if line.startswith("| toy")]
    assert [line.split(" | ")[1] for line in lines] == ["lr/tfidf", "lda/tfidf"]
    assert all("(margin)" in line for line in lines)

    # A report call gathers the summaries of earlier calls on the same --out.
    (out / "grid.md").unlink()
    assert main(["simulate", "--mode", "report", "--out", str(out)]) == 0
    report_lines = [line for line in (out / "grid.md").read_text().splitlines() if line.startswith("| toy")]
    assert [line.split(" | ")[1] for line in report_lines] == ["lda/tfidf", "lr/tfidf"]
    assert (out / "tables.md").read_text().count("**toy, teacher gold, student") == 2
    if importlib.util.find_spec("matplotlib") is not None:
        assert (out / "grid-gold.png").stat().st_size > 1000


def test_parse_students_pairs():
    assert parse_students("svm,lr", "tfidf,embeddings") == [
        ("svm", "tfidf"), ("svm", "embeddings"), ("lr", "tfidf"), ("lr", "embeddings")]
    assert parse_students("transformer,svm", "tfidf,embeddings") == [
        ("transformer", "text"), ("svm", "tfidf"), ("svm", "embeddings")]
    with pytest.raises(ValueError, match="unknown student 'bert'"):
        parse_students("svm,bert", "tfidf")
    with pytest.raises(ValueError, match="unknown features 'bow'"):
        parse_students("svm", "bow")


def test_compare_auc_seed_noise():
    def row(mean, sd, seeds=5):
        return {"auc": {"mean": mean, "sd": sd}, "seeds": seeds}

    # 2 * sqrt(0.01**2 / 5 * 2) = 0.0126: a gap of 0.01 is noise, 0.02 is not.
    assert compare_auc(row(0.80, 0.01), row(0.79, 0.01)) == "ties"
    assert compare_auc(row(0.81, 0.01), row(0.79, 0.01)) == "wins"
    assert compare_auc(row(0.77, 0.01), row(0.79, 0.01)) == "loses"
    # Identical seeds (sd 0) still need a gap above 0.001.
    assert compare_auc(row(0.7905, 0.0), row(0.79, 0.0)) == "ties"


def test_grid_table_best_greedy():
    reference = {"accuracy": 1.0, "macro_f1": 1.0, "n_train": 1000}
    runs = [fake_run(label, seed, [(100, acc + seed * 0.002), (300, acc + 0.02)])
            for label, acc in (("mraru(eps=0.05,tau=0.25)", 0.9), ("random", 0.8), ("margin", 0.85), ("entropy", 0.95))
            for seed in range(3)]
    summary = {"meta": {"corpus": "toy", "teacher": "gold", "student": "svm", "features": "tfidf"},
               "reference": reference, "rows": summarize(runs, reference)}
    line = grid_table([summary]).splitlines()[2]
    assert line.startswith("| toy (3 seeds, 300) | svm/tfidf | 1.000 | 0.911±0.001 | 0.811±0.001 | 0.961±0.001 (entropy) |")
    assert "| wins | loses |" in line


def test_cli_simulate_gbdt_parallel_finishes(tmp_path):
    # gbdt's OpenMP threads, started by the full-pool fit in the parent, once made forked workers
    # hang, so the timeout turns a hang into a failure. The pool is large enough for OpenMP to run
    # the fit on several threads.
    rng = random.Random(0)
    words = "sun rain snow wind cloud fog storm heat cold dry wet".split()
    rows = [{"text": " ".join(rng.choice(words) for _ in range(12)), "label": "abc"[i % 3]} for i in range(2000)]
    corpus = tmp_path / "toy.jsonl"
    corpus.write_text("\n".join(json.dumps(row) for row in rows))
    args = [sys.executable, "-m", "backend.cli", "simulate", "--dataset", f"{corpus}@100", "--strategy", "mraru,random",
            "--student", "gbdt", "--seeds", "2", "--seed-size", "50", "--batch-size", "50", "--jobs", "2",
            "--out", str(tmp_path / "out")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "MRARU_NO_PROGRESS": "1"})
    assert done.returncode == 0, done.stderr
    assert len(list((tmp_path / "out" / "toy" / "gold" / "gbdt-tfidf" / "runs").glob("*.json"))) == 4


def test_cli_selection_cost_counts_and_extrapolates(tmp_path):
    rows = [{"text": f"{word} weather report number {i}", "label": label}
            for i in range(1300) for word, label in [(("sun", "rain")[i % 2], ("a", "b")[i % 2])]]
    corpus = tmp_path / "toy.jsonl"
    corpus.write_text("\n".join(json.dumps(row) for row in rows))
    out = tmp_path / "out"
    args = ["simulate", "--mode", "selection-cost", "--dataset", str(corpus), "--student", "lr",
            "--pool-sizes", "2000,5000", "--exhaustive-up-to", "2000", "--eps", "0.5", "--out", str(out)]
    assert main(args) == 0

    small, large = json.loads((out / "selection-cost-toy-lr-tfidf.json").read_text())
    assert small["exhaustive_measured"] is True
    assert small["exhaustive_evaluations"] == 2000
    assert large["exhaustive_measured"] is False
    assert large["exhaustive_evaluations"] == 5000
    assert large["exhaustive_s"] == pytest.approx(small["exhaustive_s"] * 2.5, abs=0.003)
    assert 100 <= small["mraru_evaluations"] < 2000
    assert "(extrapolated)" in (out / "selection-cost-toy-lr-tfidf.md").read_text()


def test_cli_student_cost_times_every_student(tmp_path):
    rows = [{"text": f"{word} weather report number {i}", "label": label}
            for i in range(200) for word, label in [(("sun", "rain")[i % 2], ("a", "b")[i % 2])]]
    corpus = tmp_path / "toy.jsonl"
    corpus.write_text("\n".join(json.dumps(row) for row in rows))
    out = tmp_path / "out"
    assert main(["simulate", "--mode", "student-cost", "--dataset", str(corpus), "--out", str(out)]) == 0

    result = json.loads((out / "student-cost-toy-tfidf.json").read_text())
    assert [row["student"] for row in result] == ["svm", "lda", "rf", "gbdt", "lr"]
    assert all(row["accuracy"] == 1.0 for row in result)
    assert all(row["fit_s"] > 0 for row in result)


def test_cli_simulate_invalid_input_exits_2(tmp_path, capsys):
    assert main(["simulate", "--dataset", "no_such_corpus", "--out", str(tmp_path)]) == 2
    assert "unknown dataset 'no_such_corpus'" in capsys.readouterr().err
    assert main(["simulate", "--dataset", "bbc_news", "--strategy", "greedy", "--out", str(tmp_path)]) == 2
    assert "unknown strategy 'greedy'" in capsys.readouterr().err
    assert main(["simulate", "--dataset", "bbc_news", "--student", "svm,bert", "--out", str(tmp_path)]) == 2
    assert "unknown student 'bert'" in capsys.readouterr().err
    assert main(["simulate", "--mode", "selection-cost", "--student", "svm,lr", "--out", str(tmp_path)]) == 2
    assert "--mode selection-cost takes one --student" in capsys.readouterr().err
    assert main(["simulate", "--mode", "report", "--out", str(tmp_path / "empty")]) == 2
    assert "no summary.json under" in capsys.readouterr().err


@pytest.mark.parametrize(("options", "message"), [
    (["--dataset", "bbc_news@abc"], "invalid budget in dataset 'bbc_news@abc': the part after '@' must be"),
    (["--dataset", "bbc_news@-3"], "got '-3'. Write it as bbc_news@500."),
    (["--dataset", " , "], "missing corpus in --dataset: pass a corpus name or a file path"),
    (["--dataset", "bbc_news", "--budget", "-3"], "invalid --budget -3: use a whole number >= 1."),
    (["--dataset", "bbc_news", "--seeds", "0"], "invalid --seeds 0: use a whole number >= 1."),
    (["--dataset", "bbc_news", "--jobs", "0"], "invalid --jobs 0: use a whole number >= 1."),
    (["--dataset", "bbc_news", "--pool-limit", "0"], "invalid --pool-limit 0: use a whole number >= 1, or leave it out"),
    (["--dataset", "bbc_news@30", "--seed-size", "50"], "invalid budget 30 for dataset 'bbc_news': it leaves no label beyond"),
    (["--dataset", "bbc_news", "--strategy", "mraru:tau=x"], "invalid tau in strategy 'mraru:tau=x': expected a number, got 'x'."),
    (["--dataset", "no_such_corpus"], "'rotten_tomatoes', 'spamassassin', 'tweets'] and no such file exists"),
])
def test_simulate_cli_invalid_values(tmp_path, capsys, options, message):
    # Every case is rejected before a corpus is read or a run starts.
    assert main(["simulate", *options, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert "Traceback" not in error
    assert not (tmp_path / "out").exists()


def test_grid_table_without_mraru():
    summary = {"meta": {"corpus": "toy", "teacher": "gold"}, "reference": {"accuracy": 1.0},
               "rows": [{"strategy": "random"}]}
    assert grid_table([summary]).endswith("these results contain no M-RARU run. Add mraru to --strategy.\n")


def test_parse_datasets_paths_with_at(tmp_path):
    corpus = tmp_path / "team@work.jsonl"
    corpus.write_text('{"text": "a", "label": "x"}\n')
    assert parse_datasets(f"bbc_news@500, tweets,{corpus}") == [("bbc_news", 500), ("tweets", None), (str(corpus), None)]
