import uuid

import pytest
import redis

from tests.support.processes import start_server, start_worker

REDIS_URL = "redis://127.0.0.1:6379/0"

SENTIMENT_CONFIG = """<View>
  <Text name="review" value="$text"/>
  <Choices name="sentiment" toName="review" choice="single">
    <Choice value="Positive / good"/>
    <Choice value="Négatif"/>
  </Choices>
</View>"""

TOPIC_CONFIG = """<View>
  <Text name="body" value="$undefined$"/>
  <Choices name="topic" toName="body" choice="single">
    <Choice value="sport"/>
    <Choice value="tech"/>
    <Choice value="politics"/>
  </Choices>
  <Choices name="tags" toName="body" choice="multiple">
    <Choice value="long read"/>
    <Choice value="breaking"/>
  </Choices>
</View>"""

POSITIVE_WORDS = ["wonderful", "great", "moving", "brilliant", "delightful", "superb"]
NEGATIVE_WORDS = ["dull", "awful", "tedious", "boring", "clumsy", "dreadful"]


def sentiment_text(index: int, positive: bool) -> str:
    words = POSITIVE_WORDS if positive else NEGATIVE_WORDS
    return f"review {index}: a {words[index % len(words)]} and {words[(index + 2) % len(words)]} film"


@pytest.fixture
def queue_name():
    name = f"mraru-test-{uuid.uuid4().hex[:8]}"
    yield name
    connection = redis.Redis.from_url(REDIS_URL)
    for key in connection.scan_iter(f"*{name}*"):
        connection.delete(key)


@pytest.fixture
def backend(tmp_path, queue_name):
    """A `mraru serve` process and one `mraru worker` sharing Redis and a MODEL_DIR."""
    model_dir = tmp_path / "model_dir"
    env = {"REDIS_URL": REDIS_URL, "MRARU_QUEUE_NAME": queue_name, "MRARU_MIN_TRAIN_EXAMPLES": "4"}
    server, url = start_server(model_dir, tmp_path, **env)
    worker = start_worker(model_dir, tmp_path, **env)
    handle = type("Backend", (), {"url": url, "server": server, "worker": worker, "model_dir": model_dir,
                                  "env": env, "tmp_path": tmp_path})()
    yield handle
    worker.stop()
    server.stop()


def annotation_event(project_id: int, task_id: int, annotation_id: int, text: str, choice: str | None,
                     *, action: str = "ANNOTATION_CREATED", was_cancelled: bool = False,
                     from_name: str = "sentiment", to_name: str = "review", key: str = "text") -> dict:
    result = []
    if choice is not None:
        result = [{"from_name": from_name, "to_name": to_name, "type": "choices",
                   "value": {"choices": [choice]}}]
    return {
        "action": action,
        "annotation": {"id": annotation_id, "task": task_id, "result": result, "was_cancelled": was_cancelled},
        "task": {"id": task_id, "data": {key: text}, "project": project_id},
        "project": {"id": project_id},
    }
