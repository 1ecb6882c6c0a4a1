"""Without REDIS_URL, one `mraru serve` process runs the same jobs on its own thread."""

import requests

from tests.integration.test_protocol import send_annotations, setup_project, wait_for_version
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
