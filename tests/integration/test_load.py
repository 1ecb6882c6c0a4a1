"""Load over real HTTP, with a real Redis and rq worker: a webhook storm and /predict during a retrain.

These tests assert correctness only. Latencies depend on the machine, so they are printed as
figures (run with ``-s``) and recorded with `record_property`, never asserted.
"""

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import redis
import requests

from tests.integration.conftest import REDIS_URL, TOPIC_CONFIG, annotation_event, sentiment_text
from tests.integration.test_protocol import latest_bundle, setup_project, wait_for_version

POSITIVE, NEGATIVE = "Positive / good", "Négatif"
SENTIMENT_CHOICES = {POSITIVE, NEGATIVE}
TOPICS = ("sport", "tech", "politics")
TOPIC_CHOICES = {*TOPICS, "long read", "breaking"}
WORDS = ("film plot actor scene story music camera light pace script cast score ending sequel director "
         "dialogue editing costume stunt location").split()


def figures(values: list[float]) -> dict:
    """p50, p99 and max of latencies in milliseconds."""
    array = np.asarray(values) * 1000.0
    return {"p50_ms": round(float(np.percentile(array, 50)), 1), "p99_ms": round(float(np.percentile(array, 99)), 1),
            "max_ms": round(float(array.max()), 1), "n": len(values)}


def report(record_property, name: str, value) -> None:
    record_property(name, value)
    print(f"\nfigure {name}: {value}")


def long_text(rng: random.Random, index: int, positive: bool) -> str:
    """A 60-word review whose sentiment words decide the label."""
    filler = [f"{rng.choice(WORDS)}{rng.randrange(400)}" for _ in range(54)]
    return sentiment_text(index, positive) + " " + " ".join(filler)


def post_events(url: str, events: list[dict], threads: int = 8) -> list[tuple[int, float]]:
    """Send events from `threads` clients as fast as they go; return `(status, seconds)` per event."""
    local = threading.local()

    def send(event):
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        started = time.perf_counter()
        response = session.post(f"{url}/webhook", json=event, timeout=30)
        return response.status_code, time.perf_counter() - started

    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(send, events))


class RetrainSampler(threading.Thread):
    """Reads the rq queue, the rq in-flight lists and the coalescing mark in one Redis transaction,
    every 10 ms, and keeps the largest number of queued and running retrains of one project seen."""

    def __init__(self, queue_name: str, project_id: int):
        super().__init__(daemon=True)
        self.connection = redis.Redis.from_url(REDIS_URL)
        self.keys = (f"rq:queue:{queue_name}", f"rq:queue:{queue_name}:intermediate", f"rq:wip:{queue_name}")
        self.pending_key = f"mraru:{queue_name}:retrain:pending:{project_id}"
        self.prefix = f"retrain-{project_id}-".encode()
        self.max_queued = self.max_running = self.samples = self.samples_with_pending = 0
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            pipe = self.connection.pipeline(transaction=True)
            pipe.lrange(self.keys[0], 0, -1)
            pipe.lrange(self.keys[1], 0, -1)
            pipe.zrange(self.keys[2], 0, -1)
            pipe.get(self.pending_key)
            queued, intermediate, started, pending = pipe.execute()
            queued_ids = {job for job in queued if job.startswith(self.prefix)}
            # rq files a started job as "<job id>:<execution id>".
            started_ids = {member.split(b":", 1)[0] for member in started}
            running_ids = {job for job in [*intermediate, *started_ids] if job.startswith(self.prefix)} - queued_ids
            self.max_queued = max(self.max_queued, len(queued_ids))
            self.max_running = max(self.max_running, len(running_ids))
            self.samples += 1
            self.samples_with_pending += pending is not None
            time.sleep(0.01)

    def stop(self):
        self.stop_event.set()
        self.join(5)


def wait_for_examples(model_dir, project_id: int, expected: int, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    bundle = None
    while time.monotonic() < deadline:
        if (model_dir / "projects" / str(project_id) / "LATEST").exists():
            bundle = latest_bundle(model_dir, project_id)
            if bundle.n_examples.get("sentiment") == expected:
                return bundle
        time.sleep(0.5)
    raise AssertionError(f"project {project_id}: the newest student has "
                         f"{bundle.n_examples if bundle else 'no'} examples after {timeout} s, not {expected}")


def test_webhook_storm_coalesces_retrains_and_trains_on_every_annotation(backend, queue_name, record_property):
    project_id, total = 31, 2000
    setup_project(backend.url, project_id)
    events = []
    for index in range(total):
        positive = index % 2 == 0
        events.append(annotation_event(project_id, index + 1, 50_000 + index, sentiment_text(index, positive),
                                       POSITIVE if positive else NEGATIVE))
        if index % 200 == 199:
            events.append({"action": "START_TRAINING", "project": {"id": project_id}})
    sampler = RetrainSampler(queue_name, project_id)
    sampler.start()
    interval = 20.0 / len(events)
    started = time.perf_counter()
    session_local = threading.local()

    def paced(position_event):
        position, event = position_event
        delay = started + position * interval - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        session = getattr(session_local, "session", None) or requests.Session()
        session_local.session = session
        sent = time.perf_counter()
        response = session.post(f"{backend.url}/webhook", json=event, timeout=30)
        return response.status_code, time.perf_counter() - sent

    try:
        with ThreadPoolExecutor(16) as pool:
            outcomes = list(pool.map(paced, enumerate(events)))
        storm_seconds = time.perf_counter() - started
        bundle = wait_for_examples(backend.model_dir, project_id, total)
    finally:
        sampler.stop()

    report(record_property, "webhook_storm", {**figures([seconds for _, seconds in outcomes]),
                                              "events": len(events), "storm_s": round(storm_seconds, 1),
                                              "retrains": bundle.version, "samples": sampler.samples,
                                              "max_queued": sampler.max_queued, "max_running": sampler.max_running})
    statuses = [status for status, _ in outcomes]
    assert all(200 <= status < 300 for status in statuses), sorted(set(statuses))
    assert sampler.samples > 100
    assert sampler.max_queued <= 1
    assert sampler.max_running <= 1
    assert bundle.n_examples["sentiment"] == total
    assert set(bundle.classes["sentiment"]) == SENTIMENT_CHOICES


def _predict_clients(url: str, requests_per_client: int, stop: threading.Event | None, rng_seed: int):
    """16 clients alternating between the two projects; each returns `(project, seconds, body)`."""

    def client(number: int):
        rng = random.Random(rng_seed + number)
        session = requests.Session()
        out = []
        count = 0
        while (stop is None and count < requests_per_client) or (stop is not None and not stop.is_set()):
            if (number + count) % 2 == 0:
                project = 41
                tasks = [{"data": {"text": sentiment_text(rng.randrange(10_000), rng.random() < 0.5)}} for _ in range(5)]
            else:
                project = 42
                tasks = [{"data": {"$undefined$": f"{topic} story about {topic}"}} for topic in rng.choices(TOPICS, k=5)]
            sent = time.perf_counter()
            response = session.post(f"{url}/predict", json={"project": project, "tasks": tasks}, timeout=60)
            out.append((project, time.perf_counter() - sent, response.status_code, response.json()))
            count += 1
        return out

    with ThreadPoolExecutor(16) as pool:
        return [item for chunk in pool.map(client, range(16)) for item in chunk]


def _check_own_labels(outcomes, versions_a: set[str], version_b: str) -> None:
    for project, _, status, body in outcomes:
        assert status == 200, body
        assert len(body["results"]) == 5
        for item in body["results"]:
            assert item["result"], item
            if project == 41:
                assert item["model_version"] in versions_a
                assert {result["from_name"] for result in item["result"]} == {"sentiment"}
                allowed = SENTIMENT_CHOICES
            else:
                assert item["model_version"] == version_b
                assert {result["from_name"] for result in item["result"]} <= {"topic", "tags"}
                allowed = TOPIC_CHOICES
            assert {choice for result in item["result"] for choice in result["value"]["choices"]} <= allowed


def test_predict_during_retrain_answers_each_project_with_its_own_labels(backend, record_property):
    setup_project(backend.url, 41)
    setup_project(backend.url, 42, TOPIC_CONFIG)
    rng = random.Random(7)
    annotations = 4000
    events = [annotation_event(41, index + 1, 60_000 + index, long_text(rng, index, index % 2 == 0),
                               POSITIVE if index % 2 == 0 else NEGATIVE) for index in range(annotations)]
    for index in range(12):
        topic = TOPICS[index % 3]
        event = annotation_event(42, 900 + index, 90_000 + index, f"{topic} story {index} about {topic}", topic,
                                 from_name="topic", to_name="body", key="$undefined$")
        event["annotation"]["result"].append({"from_name": "tags", "to_name": "body", "type": "choices",
                                              "value": {"choices": ["breaking"] if index % 2 else ["long read"]}})
        events.append(event)
    assert all(status == 202 for status, _ in post_events(backend.url, events))
    wait_for_examples(backend.model_dir, 41, annotations)
    version_b = wait_for_version(backend.url, 42, TOPIC_CONFIG, "mraru-v0")
    time.sleep(2.0)  # let the follow-up jobs of the loading phase finish
    version_a = f"mraru-v{latest_bundle(backend.model_dir, 41).version}"

    idle = _predict_clients(backend.url, 25, None, rng_seed=100)
    _check_own_labels(idle, {version_a}, version_b)

    stop = threading.Event()
    result = {}
    runner = threading.Thread(target=lambda: result.update(outcomes=_predict_clients(backend.url, 0, stop, 200)))
    runner.start()
    train_started = time.perf_counter()
    response = requests.post(f"{backend.url}/webhook", json={"action": "START_TRAINING", "project": {"id": 41}},
                             timeout=10)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and f"mraru-v{latest_bundle(backend.model_dir, 41).version}" == version_a:
        time.sleep(0.05)
    retrain_seconds = time.perf_counter() - train_started
    stop.set()
    runner.join(120)
    busy = result["outcomes"]
    new_version = f"mraru-v{latest_bundle(backend.model_dir, 41).version}"

    assert response.status_code == 202
    assert new_version != version_a
    assert len(busy) >= 16
    _check_own_labels(busy, {version_a, new_version}, version_b)
    report(record_property, "predict_idle", figures([seconds for _, seconds, _, _ in idle]))
    report(record_property, "predict_during_retrain", {**figures([seconds for _, seconds, _, _ in busy]),
                                                       "retrain_window_s": round(retrain_seconds, 1)})
