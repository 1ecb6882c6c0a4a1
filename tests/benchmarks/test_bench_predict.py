"""`/predict` latency for 100 and 1,000 tasks and held-out accuracy, ours and the reference side by side."""

import json

import pytest

from tests.benchmarks.conftest import interleaved, predict_body, predicted_labels, summarize

GOAL_P50_100_MS = 30.0
ROUNDS = {100: 60, 1000: 50}
WARMUP = 3
ACCURACY_BATCH = 500


def rotating_batches(texts: list[str], size: int, count: int) -> list[bytes]:
    """`count` request bodies of `size` tasks, each starting further into `texts` (wrapping)."""
    bodies = []
    for round_no in range(count):
        start = (round_no * 137) % len(texts)
        window = (texts[start:] + texts[:start])[:size]
        bodies.append(predict_body(window, first_id=100000 + start))
    return bodies


def check_results(size: int):
    def check(backend, response):
        assert response.status_code == 200, f"{backend.name}: {response.status_code} {response.text[:300]}"
        results = response.json()["results"]
        assert len(results) == size, f"{backend.name}: {len(results)} results for {size} tasks"
        assert all(item["result"] for item in results), f"{backend.name}: a task got no prediction"
    return check


@pytest.mark.parametrize("size", [100, 1000])
def test_bench_predict_latency(size, backends, corpus, report):
    texts = [text for text, _ in corpus.heldout]
    check = check_results(size)
    interleaved(backends, rotating_batches(texts, size, WARMUP), "/predict", check)

    seconds, cpu_ms = interleaved(backends, rotating_batches(texts, size, ROUNDS[size]), "/predict", check)

    figures = {name: dict(summarize(values), server_cpu_ms_per_request=cpu_ms[name]) for name, values in seconds.items()}
    if "reference" in figures:
        for key in ("p50_ms", "p90_ms", "server_cpu_ms_per_request"):
            figures[f"ours_over_reference_{key}"] = round(figures["ours"][key] / figures["reference"][key], 3)
    if size == 100:
        figures["goal_p50_ms"] = GOAL_P50_100_MS
        figures["goal_met"] = figures["ours"]["p50_ms"] <= GOAL_P50_100_MS
    report[f"predict_{size}_tasks"] = figures
    assert all(len(values) >= 50 for values in seconds.values())


def test_bench_predict_heldout_accuracy(backends, corpus, report):
    texts = [text for text, _ in corpus.heldout]
    gold = [label for _, label in corpus.heldout]
    majority = max(gold.count(label) for label in set(gold)) / len(gold)
    figures = {"heldout": len(gold), "majority_class_rate": round(majority, 4)}

    for backend in backends:
        predicted = []
        for start in range(0, len(texts), ACCURACY_BATCH):
            body = predict_body(texts[start:start + ACCURACY_BATCH], first_id=200000 + start)
            _, response = backend.client.post("/predict", body)
            assert response.status_code == 200, response.text[:300]
            predicted.extend(predicted_labels(response.json()))
        figures[backend.name] = round(sum(p == g for p, g in zip(predicted, gold)) / len(gold), 4)

    report["heldout_accuracy"] = figures
    assert figures["ours"] > majority, json.dumps(figures)
