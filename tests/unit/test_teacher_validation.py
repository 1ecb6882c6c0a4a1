import pytest

from backend.labels import ChoicesBlock
from backend.teacher.validation import InvalidAnswerError, validate_answer

SINGLE = ChoicesBlock("sentiment", "text", "text", ("Positive", "Negative", "Neutral"), False)
MULTI = ChoicesBlock("topics", "text", "text", ("Sports", "Politics", "Tech, Science"), True)


@pytest.mark.parametrize(
    "raw",
    ["Positive", "positive", "  POSITIVE \n", "Positive.", '"positive"', "**Positive**", "\u201cPositive\u201d"],
)
def test_validate_answer_plain_text_folds_case_whitespace_and_punctuation(raw):
    assert validate_answer(raw, SINGLE) == ("Positive",)


@pytest.mark.parametrize(
    "raw",
    ['{"label": "Negative"}', '{"label": "negative"}', '{"labels": ["Negative"]}', '["Negative"]',
     '```json\n{"label": "Negative"}\n```'],
)
def test_validate_answer_json_shapes(raw):
    assert validate_answer(raw, SINGLE) == ("Negative",)


@pytest.mark.parametrize(
    "raw",
    ["Postive", "positive sentiment", "The answer is Positive", "Pos", "Positive/Negative", "maybe"],
)
def test_validate_answer_near_misses_are_not_coerced(raw):
    with pytest.raises(InvalidAnswerError, match="is not one of the labels"):
        validate_answer(raw, SINGLE)


def test_validate_answer_multiline_is_invalid():
    with pytest.raises(InvalidAnswerError, match="single line"):
        validate_answer("Positive\nBecause the review praises it.", SINGLE)


def test_validate_answer_empty_is_invalid():
    with pytest.raises(InvalidAnswerError, match="empty"):
        validate_answer("   ", SINGLE)


def test_validate_answer_message_names_task_raw_and_label_set():
    with pytest.raises(InvalidAnswerError) as info:
        validate_answer("Great", SINGLE, task_id=42)
    message = str(info.value)
    assert message.startswith("task 42: ")
    assert "'Great'" in message
    assert "['Positive', 'Negative', 'Neutral']" in message


def test_validate_answer_malformed_json_is_invalid():
    with pytest.raises(InvalidAnswerError, match="not valid JSON"):
        validate_answer('{"label": "Positive"', SINGLE)


def test_validate_answer_json_with_extra_keys_is_invalid():
    with pytest.raises(InvalidAnswerError, match="expected one key"):
        validate_answer('{"label": "Positive", "reason": "nice"}', SINGLE)


def test_validate_answer_json_wrong_type_is_invalid():
    with pytest.raises(InvalidAnswerError, match="label string or a list"):
        validate_answer('{"label": 3}', SINGLE)


def test_validate_answer_two_labels_for_single_choice_is_invalid():
    with pytest.raises(InvalidAnswerError, match="exactly one is allowed"):
        validate_answer('{"labels": ["Positive", "Negative"]}', SINGLE)


def test_validate_answer_multi_returns_config_order_without_duplicates():
    assert validate_answer("politics, sports, Politics", MULTI) == ("Sports", "Politics")
    assert validate_answer('{"labels": ["Politics", "Sports"]}', MULTI) == ("Sports", "Politics")
    assert validate_answer('{"label": "sports"}', MULTI) == ("Sports",)


def test_validate_answer_multi_label_containing_comma_matches_exactly():
    assert validate_answer("Tech, Science", MULTI) == ("Tech, Science",)
    assert validate_answer('{"labels": ["Tech, Science", "Sports"]}', MULTI) == ("Sports", "Tech, Science")


def test_validate_answer_multi_unknown_member_is_invalid():
    with pytest.raises(InvalidAnswerError, match="'Weather' is not one of the labels"):
        validate_answer("Sports, Weather", MULTI)


def test_validate_answer_multi_empty_list_is_invalid():
    with pytest.raises(InvalidAnswerError, match="names no label"):
        validate_answer('{"labels": []}', MULTI)


def test_validate_answer_labels_that_fold_alike_need_exact_match():
    block = ChoicesBlock("c", "text", "text", ("C", "C++"), False)
    assert validate_answer("C++", block) == ("C++",)
    assert validate_answer("c", block) == ("C",)
    with pytest.raises(InvalidAnswerError):
        validate_answer("c+", block)
