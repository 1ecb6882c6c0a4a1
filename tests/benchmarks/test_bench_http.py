"""`/webhook`, warm `/setup` and `/health` latency over real HTTP."""

import json

from tests.benchmarks.conftest import LABEL_CONFIG, PROJECT, interleaved, summarize

GOAL_WEBHOOK_P99_MS = 50.0
ROUNDS = 300


def expect_status(status: int):
    def check(backend, response):
        assert response.status_code == status, f"{backend.name}: {response.status_code} {response.text[:300]}"
    return check


def test_bench_webhook_latency(ours, reference, report):
    figures = summarize(ours.webhook_seconds)
    figures["goal_p99_ms"] = GOAL_WEBHOOK_P99_MS
    figures["goal_met"] = figures["p99_ms"] <= GOAL_WEBHOOK_P99_MS
    if reference is not None:
        # The reference fits inside the request. One webhook trained it on every labelled task.
        figures["reference_training_webhook_ms"] = round(reference.train_seconds * 1000.0, 1)
    report["webhook_annotation_created"] = figures

    assert figures["n"] >= 500


def test_bench_setup_warm_latency(backends, report):
    body = json.dumps({"project": PROJECT, "schema": LABEL_CONFIG, "hostname": "http://127.0.0.1:8080",
                       "access_token": "benchmark", "extra_params": {}}).encode()
    check = expect_status(200)
    interleaved(backends, [body] * 5, "/setup", check)

    seconds, cpu_ms = interleaved(backends, [body] * ROUNDS, "/setup", check)

    report["setup_warm"] = {name: dict(summarize(values), server_cpu_ms_per_request=cpu_ms[name])
                            for name, values in seconds.items()}
    assert all(len(values) == ROUNDS for values in seconds.values())


def test_bench_health_latency(backends, report):
    seconds = {backend.name: [] for backend in backends}
    for round_no in range(ROUNDS):
        for backend in backends if round_no % 2 == 0 else backends[::-1]:
            elapsed, response = backend.client.get("/health")
            assert response.status_code == 200, f"{backend.name}: {response.status_code}"
            assert response.json()["status"] == "UP", f"{backend.name}: {response.text[:300]}"
            seconds[backend.name].append(elapsed)

    report["health"] = {name: summarize(values) for name, values in seconds.items()}
    assert all(len(values) == ROUNDS for values in seconds.values())
