"""Teacher faults and the teacher budget, through whole rounds of real `mraru serve` and `mraru worker`.

The teacher is the OpenAI-compatible fake server of tests/support; Label Studio is the fake REST API
of test_faults_label_studio.py, so every pre-label a round writes can be read back and checked.
"""

import sqlite3
import uuid

import pytest

from backend.budget import TeacherBudget
from backend.config import Settings
from tests.integration.test_faults_label_studio import (
    LABELS,
    FakeLabelStudio,
    backend_env,
    clean_queue,
    gold_label,
    log_lines,
    rounds_of,
    setup_project,
    wait_until,
)
from tests.support.fake_openai import DEFAULTS, _answer, _prompt_text, start_fake_openai
from tests.support.processes import free_port, start_server, start_worker

SEED = 8


def project_tasks(project_id: int) -> range:
    return range(project_id * 100 + 1, project_id * 100 + SEED + 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One fake teacher, one fake Label Studio, one server and one worker for every fault case."""
    tmp_path = tmp_path_factory.mktemp("teacher-faults")
    queue_name = f"mraru-teacher-{uuid.uuid4().hex[:8]}"
    teacher = start_fake_openai()
    ls = FakeLabelStudio()
    env = backend_env(queue_name, ls, teacher.base_url)
    model_dir = tmp_path / "model_dir"
    server, url = start_server(model_dir, tmp_path, **env)
    worker = start_worker(model_dir, tmp_path, **env)
    handle = type("World", (), {"ls": ls, "teacher": teacher, "url": url, "worker": worker, "model_dir": model_dir,
                                "env": env, "tmp_path": tmp_path})
    yield handle
    worker.stop()
    server.stop()
    ls.stop()
    teacher.stop()
    clean_queue(queue_name)


def run_round(world, project_id: int) -> dict:
    world.ls.add_tasks(project_id, project_tasks(project_id))
    setup_project(world.url, project_id)
    return wait_until(lambda: rounds_of(world.model_dir, project_id), 90, f"project {project_id}: no round")[0]


def check_predictions(world, project_id: int) -> list[dict]:
    """Return the project's pre-labels after checking each names one gold label of the config."""
    predictions = world.ls.predictions_of(project_id)
    for item in predictions:
        (result,) = item["result"]
        assert result["from_name"] == "sentiment"
        assert result["to_name"] == "text"
        assert result["value"]["choices"] == [gold_label(item["task"])]
        assert result["value"]["choices"][0] in LABELS
    assert len({item["task"] for item in predictions}) == len(predictions)
    return predictions


# (case, fake server behaviour, pre-labels expected, teacher requests expected)
CASES = [
    ("429_retry_after", {"mode": "status", "status": 429, "retry_after": 1, "fail_first": 2}, SEED, SEED + 2),
    ("429", {"mode": "status", "status": 429, "fail_first": 2}, SEED, SEED + 2),
    ("500", {"mode": "status", "status": 500, "fail_first": 2}, SEED, SEED + 2),
    ("502", {"mode": "status", "status": 502, "fail_first": 2}, SEED, SEED + 2),
    ("503", {"mode": "status", "status": 503, "fail_first": 2}, SEED, SEED + 2),
    ("read_timeout", {"mode": "hang", "hang_s": 6, "fail_first": 2}, SEED, SEED + 2),
    ("malformed_body", {"mode": "bad_body", "fail_first": 1}, SEED - 1, SEED),
    ("malformed_json_answer", {"mode": "bad_json_answer", "fail_first": 1}, SEED - 1, SEED),
    ("out_of_set", {"mode": "out_of_set", "fail_first": 1}, SEED - 1, SEED),
    ("multiline", {"mode": "multiline", "fail_first": 1}, SEED - 1, SEED),
    # A 400 such as context_length_exceeded cannot succeed on a retry: asked once, never again.
    ("context_length_400", {"mode": "status", "status": 400, "fail_first": 1}, SEED - 1, SEED),
    ("always_503", {"mode": "status", "status": 503}, 0, SEED * 3),
]


@pytest.mark.parametrize(("case", "behaviour", "labelled", "requests_sent"), CASES, ids=[c[0] for c in CASES])
def test_round_teacher_fault_keeps_batch(world, case, behaviour, labelled,
                                                                      requests_sent):
    project_id = 50 + [c[0] for c in CASES].index(case)
    world.teacher.control(reset_stats=True, **dict(DEFAULTS, **behaviour))

    record = run_round(world, project_id)
    predictions = check_predictions(world, project_id)

    usage = record["teacher_usage"]["sentiment"]
    assert sorted(record["task_ids"]) == list(project_tasks(project_id))
    assert len(predictions) == labelled
    assert record["prelabelled"] == labelled
    assert usage["invalid"] == SEED - labelled
    assert world.teacher.stats()["generations"] == requests_sent


def test_round_teacher_unreachable_queues_tasks(world, tmp_path):
    env = dict(world.env, OPENAI_BASE_URL=f"http://127.0.0.1:{free_port()}/v1",
               MRARU_QUEUE_NAME=f"mraru-teacher-{uuid.uuid4().hex[:8]}")
    model_dir = tmp_path / "model_dir"
    server, url = start_server(model_dir, tmp_path, **env)
    worker = start_worker(model_dir, tmp_path, **env)
    try:
        world.ls.add_tasks(70, project_tasks(70))
        setup_project(url, 70)
        record = wait_until(lambda: rounds_of(model_dir, 70), 90, "no round with the teacher down")[0]
    finally:
        worker.stop()
        server.stop()
        clean_queue(env["MRARU_QUEUE_NAME"])

    assert sorted(record["task_ids"]) == list(project_tasks(70))
    assert record["prelabelled"] == 0
    assert world.ls.predictions_of(70) == []
    assert world.ls.count("PATCH", r"^/api/tasks/70\d\d$") == SEED


def test_round_teacher_wrong_key_not_retried(world):
    world.teacher.control(reset_stats=True, **dict(DEFAULTS, api_key="sk-the-right-key"))

    record = run_round(world, 71)

    assert record["prelabelled"] == 0
    assert world.ls.predictions_of(71) == []
    # The first 401 stops the batch: no retries, and at most one request per concurrent slot.
    assert world.teacher.stats()["generations"] <= 4
    assert log_lines(world.worker, r"ERROR .*project=71 teacher configuration error.*OPENAI_API_KEY")


def billed_tokens(bodies) -> int:
    """Tokens the fake server billed for `bodies`, by its own formula for correct chat completions."""
    total = 0
    for body in bodies:
        answer = _answer(body, "correct")
        total += max(1, len(_prompt_text(body)) // 4) + max(1, len(answer) // 4)
    return total


@pytest.mark.parametrize(("budget", "limit"), [
    ({"MRARU_BUDGET_LABELS": 10}, 10),
    ({"MRARU_BUDGET_TOKENS": 1000}, 1000),
    ({"MRARU_BUDGET_USD": 0.002, "MRARU_PRICE_PER_1K_TOKENS": 0.002}, 1000),
], ids=["labels", "tokens", "usd"])
def test_budget_two_workers_never_exceeded(tmp_path, budget, limit):
    queue_name = f"mraru-budget-{uuid.uuid4().hex[:8]}"
    teacher = start_fake_openai(delay=0.2)
    ls = FakeLabelStudio()
    env = backend_env(queue_name, ls, teacher.base_url, **budget)
    model_dir = tmp_path / "model_dir"
    server, url = start_server(model_dir, tmp_path, **env)
    workers = [start_worker(model_dir, tmp_path, name=f"worker-{n}", **env) for n in (1, 2)]
    try:
        for project_id in (81, 82):
            ls.add_tasks(project_id, project_tasks(project_id))
        wait_until(lambda: all("Listening on" in w.log_text() for w in workers), 60, "workers did not start")
        for project_id in (81, 82):
            setup_project(url, project_id)
        for project_id in (81, 82):
            wait_until(lambda: rounds_of(model_dir, project_id), 90, f"project {project_id}: no round")
        stats, bodies = teacher.stats(), teacher.requests()
        spent = TeacherBudget(Settings(model_dir=str(model_dir), price_per_1k_tokens=0.002)).spent()
        predictions = ls.predictions_of(81) + ls.predictions_of(82)
        log = "".join(w.log_text() for w in workers)
    finally:
        for worker in workers:
            worker.stop()
        server.stop()
        ls.stop()
        teacher.stop()
        clean_queue(queue_name)

    assert 0 < stats["generations"] < 2 * SEED
    assert len(predictions) == stats["generations"] == spent["labels"]
    assert spent["reserved_labels"] == 0
    assert spent["reserved_tokens"] == 0
    assert billed_tokens(bodies) == spent["tokens"]
    if "MRARU_BUDGET_LABELS" in budget:
        assert spent["labels"] == limit
    else:
        assert spent["tokens"] <= limit
    assert "teacher budget spent" in log
    # Both workers ran a round, so the reservations really raced.
    assert all("round started" in worker.log_text() for worker in workers)


def test_budget_stale_reservation_counts_as_spent(tmp_path):
    settings = Settings(model_dir=str(tmp_path), budget_labels=5, budget_tokens=1000, job_timeout=60)
    budget = TeacherBudget(settings)
    lost = budget.reserve(1, [100, 100, 100])
    with sqlite3.connect(tmp_path / "state.sqlite3") as connection:
        connection.execute("UPDATE budget_reservations SET created_at = created_at - 3600")

    later = budget.reserve(2, [100, 100, 100])
    budget.settle(lost, 1, 10)
    budget.settle(later, 2, 20)

    assert lost.granted == 3
    assert later.granted == 2
    assert budget.spent()["labels"] == 5
    assert budget.spent()["tokens"] == 320
    assert budget.spent()["reserved_labels"] == 0
