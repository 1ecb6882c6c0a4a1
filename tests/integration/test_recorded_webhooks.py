"""Replay bodies recorded from a real Label Studio 1.23.2 (tests/e2e/fixtures) into the backend."""

import json
import time
from pathlib import Path

import requests

from tests.integration.test_protocol import latest_bundle

FIXTURES = Path(__file__).resolve().parents[1] / "e2e" / "fixtures"


def recorded(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def test_recorded_setup_and_predict_bodies_are_accepted(backend):
    setup = requests.post(f"{backend.url}/setup", json=recorded("setup"), timeout=5)
    body = recorded("predict")

    predict = requests.post(f"{backend.url}/predict", json=body, timeout=5)

    assert setup.status_code == 200
    assert setup.json()["model_version"] == "mraru-v0"
    assert predict.status_code == 200
    assert len(predict.json()["results"]) == len(body["tasks"])


def test_recorded_events_get_expected_statuses(backend):
    expected = {
        "annotation_created": 202,
        "annotation_updated": 202,
        "annotation_skipped": 202,
        "annotations_deleted": 202,
        "start_training": 202,
        "project_updated": 200,
    }
    for name, status in expected.items():
        response = requests.post(f"{backend.url}/webhook", json=recorded(name), timeout=5)
        assert response.status_code == status, (name, response.text)


def test_recorded_annotations_train_student(backend):
    created = recorded("annotation_created")
    project_id = created["project"]["id"]
    labels = ["Positive", "Negative"]
    for index in range(8):
        event = json.loads(json.dumps(created))
        event["annotation"]["id"] = 100 + index
        event["task"]["id"] = 200 + index
        event["task"]["data"] = {"text": f"{'lovely charming' if index % 2 == 0 else 'awful boring'} story {index}"}
        event["annotation"]["result"][0]["value"]["choices"] = [labels[index % 2]]
        response = requests.post(f"{backend.url}/webhook", json=event, timeout=5)
        assert response.status_code == 202, response.text

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if (backend.model_dir / "projects" / str(project_id) / "LATEST").exists() and \
                latest_bundle(backend.model_dir, project_id).n_examples.get("sentiment") == 8:
            break
        time.sleep(0.3)

    assert latest_bundle(backend.model_dir, project_id).n_examples["sentiment"] == 8
