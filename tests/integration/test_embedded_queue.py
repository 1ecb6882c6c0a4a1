"""Without REDIS_URL, one `mraru serve` process runs the same jobs on its own thread."""

import requests

from backend.students.embeddings import SentenceEmbeddings
from tests.integration.test_protocol import (NEGATIVE, POSITIVE, latest_bundle, send_annotations, setup_project,
                                             wait_for_version)
from tests.integration.conftest import SENTIMENT_CONFIG
from tests.support.processes import start_server


def test_embedded_queue_retrains_without_redis(tmp_path):
    server, url = start_server(tmp_path / "model_dir", tmp_path)
    try:
        setup_project(url, 31)
        send_annotations(url, 31, 8)
        version = wait_for_version(url, 31, SENTIMENT_CONFIG, "mraru-v0")
        prediction = requests.post(f"{url}/predict", json={"tasks": [{"data": {"text": "a superb film"}}],
                                                           "project": 31}, timeout=5).json()["results"][0]
    finally:
        server.stop()

    assert version != "mraru-v0"
    assert prediction["model_version"] == version
    assert "queued retrain (embedded)" in server.log_text()


def test_embedding_student_retrains_and_predicts(tmp_path):
    # MRARU_FEATURES=embeddings through a real `mraru serve`: the retrain encodes with the
    # packaged all-MiniLM-L6-v2, and /predict loads the encoder in the serving process.
    server, url = start_server(tmp_path / "model_dir", tmp_path, MRARU_FEATURES="embeddings")
    try:
        setup_project(url, 32)
        send_annotations(url, 32, 8)
        version = wait_for_version(url, 32, SENTIMENT_CONFIG, "mraru-v0", timeout=120)
        response = requests.post(f"{url}/predict", json={"tasks": [{"data": {"text": "a superb film"}}],
                                                         "project": 32}, timeout=60)
    finally:
        server.stop()

    assert version != "mraru-v0"
    assert response.status_code == 200
    prediction = response.json()["results"][0]
    assert prediction["model_version"] == version
    assert prediction["result"][0]["value"]["choices"][0] in (POSITIVE, NEGATIVE)
    estimator = latest_bundle(tmp_path / "model_dir", 32).estimators["sentiment"]
    assert isinstance(estimator.steps[0][1], SentenceEmbeddings)
