"""The teacher against the fake OpenAI server, over real HTTP in a separate process."""

import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.config import Settings
from backend.labels import ChoicesBlock
from backend.teacher import AnswerCache, Teacher, TeacherConfigError
from tests.support.fake_openai import DEFAULTS, start_fake_openai

REPO_ROOT = Path(__file__).resolve().parents[2]
WRITER = """
import sys
from backend.teacher.cache import AnswerCache, CachedAnswer
cache = AnswerCache(sys.argv[1])
for i in range(200):
    cache.put("m", "p", f"{sys.argv[2]}-{i}", CachedAnswer(("a",), True, "a", None, 1, 1))
"""

SENTIMENT = ChoicesBlock("sentiment", "text", "text", ("positive", "negative"), False)
TOPICS = ChoicesBlock("topics", "text", "text", ("sports", "politics", "tech"), True)
ITEMS = [(1, "What a match! [gold:positive]"), (2, "Awful service. [gold:negative]"), (3, "Lovely. [gold:positive]")]
EXAMPLES = [("Great film [gold:negative]", ("positive",)), ("Terrible [gold:positive]", ("negative",))]


@pytest.fixture(scope="module")
def fake():
    server = start_fake_openai()
    yield server
    server.stop()


@pytest.fixture
def server(fake):
    fake.control(reset_stats=True, **DEFAULTS)
    return fake


@pytest.fixture
def make_teacher(server, tmp_path):
    teachers = []

    def make(cache_path=None, **overrides):
        values = {"openai_base_url": server.base_url, "openai_api_key": "sk-test-secret-123",
                  "teacher_model": "fake-model", "teacher_timeout": 5.0, "teacher_max_retries": 2}
        values.update(overrides)
        teacher = Teacher(Settings(**values), AnswerCache(cache_path or tmp_path / "teacher.sqlite3"))
        teachers.append(teacher)
        return teacher

    yield make
    for teacher in teachers:
        teacher.close()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_teacher_label_correct_answers_in_item_order(make_teacher, server, mode):
    teacher = make_teacher(teacher_mode=mode)
    answers = teacher.label(ITEMS, SENTIMENT, examples=EXAMPLES)
    assert [a.task_id for a in answers] == [1, 2, 3]
    assert [a.labels for a in answers] == [("positive",), ("negative",), ("positive",)]
    assert all(a.valid and a.error is None and not a.cached for a in answers)
    assert server.stats()["generations"] == 3


def test_teacher_label_wrong_answer_is_valid_but_wrong(make_teacher, server):
    server.control(mode="wrong")
    answers = make_teacher().label(ITEMS[:1], SENTIMENT)
    assert answers[0].valid
    assert answers[0].labels == ("negative",)


@pytest.mark.parametrize(("mode", "raw_part"), [("out_of_set", "definitely-not-a-label"), ("multiline", "\n")])
def test_teacher_label_invalid_answers_are_recorded_not_coerced(make_teacher, server, tmp_path, mode, raw_part):
    server.control(mode=mode)
    teacher = make_teacher(teacher_mode="completion")
    answers = teacher.label(ITEMS, SENTIMENT)
    assert all(not a.valid and a.labels == () for a in answers)
    assert all(raw_part in a.raw and "task " in a.error and "['positive', 'negative']" in a.error for a in answers)
    assert len(teacher.cache) == 3
    assert teacher.usage_of(answers)["invalid"] == 3


def test_teacher_label_malformed_json_answer_is_invalid_and_cached(make_teacher, server):
    server.control(mode="bad_json_answer")
    teacher = make_teacher()
    answers = teacher.label(ITEMS[:1], SENTIMENT)
    assert not answers[0].valid
    assert "not valid JSON" in answers[0].error
    assert teacher.label(ITEMS[:1], SENTIMENT)[0].cached


def test_teacher_label_malformed_response_body_is_not_cached(make_teacher, server):
    server.control(mode="bad_body")
    teacher = make_teacher()
    answers = teacher.label(ITEMS[:2], SENTIMENT)
    assert all(not a.valid and "malformed response" in a.error for a in answers)
    assert len(teacher.cache) == 0
    server.control(mode="correct")
    again = teacher.label(ITEMS[:2], SENTIMENT)
    assert [a.labels for a in again] == [("positive",), ("negative",)]
    assert not any(a.cached for a in again)


def test_teacher_label_429_retry_after_is_honoured(make_teacher, server):
    server.control(mode="status", status=429, retry_after=1.5, fail_first=1)
    started = time.monotonic()
    answers = make_teacher(teacher_max_retries=2).label(ITEMS[:1], SENTIMENT)
    elapsed = time.monotonic() - started
    assert answers[0].valid
    assert server.stats()["generations"] == 2
    assert elapsed >= 1.5  # the client's own first backoff is at most 0.5 s


def test_teacher_label_429_without_retry_after_backs_off_and_recovers(make_teacher, server):
    server.control(mode="status", status=429, fail_first=2)
    answers = make_teacher(teacher_max_retries=3).label(ITEMS[:1], SENTIMENT)
    assert answers[0].valid
    assert server.stats()["generations"] == 3


@pytest.mark.parametrize("status", [500, 502, 503])
def test_teacher_label_5xx_then_recover(make_teacher, server, status):
    server.control(mode="status", status=status, fail_first=2)
    answers = make_teacher(teacher_max_retries=3).label(ITEMS[:1], SENTIMENT)
    assert answers[0].valid
    assert answers[0].labels == ("positive",)
    assert server.stats()["generations"] == 3


def test_teacher_label_5xx_after_retries_is_invalid_and_not_cached(make_teacher, server):
    server.control(mode="status", status=503)
    teacher = make_teacher(teacher_max_retries=1)
    answers = teacher.label(ITEMS, SENTIMENT)
    assert all(not a.valid and "503" in a.error for a in answers)
    assert server.stats()["generations"] == 6
    assert len(teacher.cache) == 0


def test_teacher_label_other_4xx_is_not_retried(make_teacher, server):
    server.control(mode="status", status=400)
    answers = make_teacher(teacher_max_retries=3).label(ITEMS[:2], SENTIMENT)
    assert all(not a.valid and "rejected the request" in a.error for a in answers)
    assert server.stats()["generations"] == 2


def test_teacher_label_timeout_then_recover(make_teacher, server):
    server.control(mode="hang", hang_s=3, fail_first=1)
    started = time.monotonic()
    answers = make_teacher(teacher_timeout=0.5, teacher_max_retries=2).label(ITEMS[:1], SENTIMENT)
    assert answers[0].valid
    assert server.stats()["generations"] == 2
    assert time.monotonic() - started >= 0.5


def test_teacher_label_closed_connection_then_recover(make_teacher, server):
    server.control(mode="close", fail_first=1)
    answers = make_teacher(teacher_max_retries=2).label(ITEMS[:1], SENTIMENT)
    assert answers[0].valid
    assert server.stats()["generations"] == 2


def test_teacher_label_connection_refused_is_invalid_then_recovers(tmp_path):
    port = _free_port()
    settings = Settings(openai_base_url=f"http://127.0.0.1:{port}/v1", teacher_max_retries=1,
                        teacher_timeout=2.0, teacher_concurrency=1)
    cache = AnswerCache(tmp_path / "teacher.sqlite3")
    teacher = Teacher(settings, cache)
    answers = teacher.label(ITEMS, SENTIMENT)
    assert all(not a.valid for a in answers)
    assert "Connection error" in answers[0].error
    assert all("unreachable" in a.error for a in answers[1:])
    assert len(cache) == 0
    with start_fake_openai(port=port):
        again = teacher.label(ITEMS, SENTIMENT)
    assert all(a.valid for a in again)
    teacher.close()


def test_teacher_label_restart_makes_no_http_calls(make_teacher, server, tmp_path):
    path = tmp_path / "shared.sqlite3"
    first = make_teacher(cache_path=path).label(ITEMS, SENTIMENT, examples=EXAMPLES)
    before = server.stats()["generations"]
    second = make_teacher(cache_path=path).label(ITEMS, SENTIMENT, examples=EXAMPLES)
    assert server.stats()["generations"] == before == 3
    assert all(a.cached for a in second)
    assert [(a.labels, a.raw, a.prompt_tokens) for a in second] == [(a.labels, a.raw, a.prompt_tokens) for a in first]


def test_teacher_label_new_examples_miss_the_cache(make_teacher, server):
    teacher = make_teacher()
    teacher.label(ITEMS[:1], SENTIMENT)
    answers = teacher.label(ITEMS[:1], SENTIMENT, examples=EXAMPLES)
    assert not answers[0].cached
    assert server.stats()["generations"] == 2


def test_teacher_label_concurrency_is_bounded(make_teacher, server):
    server.control(delay=0.5)
    items = [(i, f"text {i} [gold:positive]") for i in range(12)]
    answers = make_teacher(teacher_concurrency=3).label(items, SENTIMENT)
    assert all(a.valid for a in answers)
    in_flight = server.stats()["max_in_flight"]
    assert in_flight <= 3
    assert in_flight >= 2  # requests did overlap; exactly 3 depends on thread scheduling on a busy machine


def test_teacher_label_truncates_very_long_text(make_teacher, server):
    long_text = "[gold:negative] " + "blah " * 50_000
    answers = make_teacher(teacher_mode="completion", teacher_max_text_tokens=64).label([(9, long_text)], SENTIMENT)
    assert answers[0].labels == ("negative",)
    prompt = server.requests()[-1]["prompt"]
    sent = prompt.split("<text>\n")[-1].split("\n</text>")[0]
    assert sent.endswith("[...]")
    assert len(sent) <= 64 * 4


def test_teacher_usage_of_sums_tokens_and_counts_cached(make_teacher, server):
    teacher = make_teacher()
    answers = teacher.label(ITEMS, SENTIMENT)
    usage = teacher.usage_of(answers)
    assert usage["calls"] == 3
    assert usage["cached"] == 0
    assert usage["invalid"] == 0
    assert usage["prompt_tokens"] == sum(a.prompt_tokens for a in answers) > 0
    assert usage["completion_tokens"] == sum(a.completion_tokens for a in answers) > 0
    cached = teacher.usage_of(teacher.label(ITEMS, SENTIMENT))
    assert cached == {"prompt_tokens": 0, "completion_tokens": 0, "calls": 0, "cached": 3, "invalid": 0}


@pytest.mark.parametrize("mode", ["chat", "completion"])
def test_teacher_label_multi_label_answers(make_teacher, server, mode):
    items = [(1, "Vote on the stadium [gold:sports,politics]"), (2, "New phone [gold:tech]")]
    answers = make_teacher(teacher_mode=mode).label(items, TOPICS, examples=[("Goal!", ("sports",))])
    assert [a.labels for a in answers] == [("sports", "politics"), ("tech",)]
    body = server.requests()[-1]
    if mode == "chat":
        assert body["response_format"]["json_schema"]["schema"]["properties"]["labels"]["type"] == "array"
    else:
        assert "(\", \" label)*" in body["grammar"]


@pytest.mark.parametrize("status", [400, 422, 500])
def test_teacher_label_auto_falls_back_when_json_schema_is_refused(make_teacher, server, status):
    server.control(reject=["json_schema"], reject_status=status)
    answers = make_teacher(teacher_mode="chat").label(ITEMS, SENTIMENT)
    assert all(a.valid for a in answers)
    assert server.requests()[-1]["response_format"]["type"] == "json_object"


def test_teacher_label_auto_drops_unknown_completion_keys(make_teacher, server):
    server.control(reject=["grammar"])
    answers = make_teacher(teacher_mode="completion").label(ITEMS, SENTIMENT)
    assert all(a.valid for a in answers)
    assert "grammar" not in server.requests()[-1]


def test_teacher_label_explicit_constraint_is_not_dropped(make_teacher, server):
    server.control(reject=["grammar"])
    answers = make_teacher(teacher_mode="completion", teacher_constraint="grammar").label(ITEMS[:1], SENTIMENT)
    assert not answers[0].valid
    assert "grammar" in answers[0].error


def test_teacher_label_bad_api_key_raises_config_error_without_the_key(make_teacher, server):
    server.control(api_key="the-right-key")
    items = [(i, f"t {i} [gold:positive]") for i in range(20)]
    with pytest.raises(TeacherConfigError, match="answered 401.*check OPENAI_API_KEY") as info:
        make_teacher(teacher_concurrency=2).label(items, SENTIMENT)
    assert "sk-test-secret-123" not in str(info.value)
    assert server.stats()["generations"] <= 3  # the two in flight, and at most one that raced the stop


def test_teacher_label_unknown_model_raises_config_error(make_teacher, server):
    server.control(models=["served-model"])
    with pytest.raises(TeacherConfigError, match="answered 404.*MRARU_TEACHER_MODEL='fake-model'"):
        make_teacher().label(ITEMS, SENTIMENT)


@pytest.mark.parametrize("url", ["", "127.0.0.1:8000/v1", "ftp://127.0.0.1/v1"])
def test_teacher_bad_base_url_raises_config_error(tmp_path, url):
    with pytest.raises(TeacherConfigError, match="OPENAI_BASE_URL=.*is not an http"):
        Teacher(Settings(openai_base_url=url), AnswerCache(tmp_path / "c.sqlite3"))


def test_teacher_label_empty_text_is_invalid_without_a_call(make_teacher, server):
    answers = make_teacher().label([(5, "   ")], SENTIMENT)
    assert not answers[0].valid
    assert "empty" in answers[0].error
    assert server.stats()["generations"] == 0


def test_answer_cache_shared_by_concurrent_processes(tmp_path):
    path = tmp_path / "teacher.sqlite3"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), name], cwd=REPO_ROOT)
               for name in ("first", "second", "third")]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0]
    cache = AnswerCache(path)
    assert len(cache) == 600
    assert cache.get("m", "p", "second-199").labels == ("a",)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
