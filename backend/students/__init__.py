"""Student classifiers trained on teacher and human labels."""

from backend.students.estimators import (
    MIN_PER_CLASS,
    STUDENTS,
    NotEnoughDataError,
    check_trainable,
    fit_student,
    make_student,
)

__all__ = ["MIN_PER_CLASS", "STUDENTS", "NotEnoughDataError", "check_trainable", "fit_student", "make_student"]
