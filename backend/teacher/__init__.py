"""The LLM teacher: labels task texts through an OpenAI-compatible server, with an answer cache."""

from backend.teacher.cache import AnswerCache
from backend.teacher.client import Teacher, TeacherAnswer, TeacherConfigError
from backend.teacher.validation import InvalidAnswerError, validate_answer

__all__ = [
    "AnswerCache",
    "InvalidAnswerError",
    "Teacher",
    "TeacherAnswer",
    "TeacherConfigError",
    "validate_answer",
]
