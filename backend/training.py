"""Turn stored annotations into training sets and fit a student bundle for one project."""

import logging

import numpy as np

from .labels import ChoicesBlock, LabelSpec, task_text
from .store import StudentBundle
from .students import NotEnoughDataError, fit_student

logger = logging.getLogger(__name__)


def block_examples(block: ChoicesBlock, annotations: list[dict]) -> list[tuple[int, str, tuple[str, ...]]]:
    """Return `(task_id, text, labels)` for each usable, non-skipped annotation of `block`.

    Choice strings that are not in the block's config are dropped; an annotation left with no
    known choice is not used (for single-choice blocks), so a renamed label never trains the student.
    """
    allowed = set(block.choices)
    examples = []
    for annotation in annotations:
        if annotation.get("was_cancelled"):
            continue
        text = task_text(annotation.get("data"), block.value_key)
        if text is None:
            continue
        labels = _result_choices(annotation.get("result"), block)
        if labels is None:
            continue
        labels = tuple(label for label in labels if label in allowed)
        if not labels and not block.multiple:
            continue
        examples.append((annotation["task_id"], text, labels))
    return examples


def _result_choices(result, block: ChoicesBlock) -> list[str] | None:
    if not isinstance(result, list):
        return None
    for item in result:
        if not isinstance(item, dict) or item.get("from_name") != block.from_name:
            continue
        value = item.get("value")
        choices = value.get("choices") if isinstance(value, dict) else None
        if isinstance(choices, list):
            return [choice for choice in choices if isinstance(choice, str)]
    return None


def train_bundle(spec: LabelSpec, annotations: list[dict], student: str, *, label_config: str = "",
                 random_state: int = 0, min_examples: int = 4, features: str = "tfidf") -> StudentBundle:
    """Fit one estimator per block on `annotations`, with `student` on `features` ("tfidf" or
    "embeddings", see `backend.students.make_student`).

    Raises
    ------
    NotEnoughDataError
        If no block has enough examples to train; the message lists each block's counts.
    """
    bundle = StudentBundle(version=0, student=student, label_config=label_config)
    reasons = []
    for block in spec.blocks:
        examples = block_examples(block, annotations)
        texts = [text for _, text, _ in examples]
        try:
            if len(examples) < min_examples:
                raise NotEnoughDataError(
                    f"{len(examples)} usable annotation(s), at least {min_examples} needed"
                )
            if block.multiple:
                target = np.array([[choice in labels for choice in block.choices] for _, _, labels in examples], dtype=int)
                estimator = fit_student(student, texts, target, multilabel=True, random_state=random_state,
                                        features=features)
                classes = block.choices
            else:
                target = [labels[0] for _, _, labels in examples]
                estimator = fit_student(student, texts, target, random_state=random_state, features=features)
                classes = tuple(str(label) for label in estimator.classes_)
        except NotEnoughDataError as exc:
            reasons.append(f"{block.from_name}: {exc}")
            continue
        bundle.estimators[block.from_name] = estimator
        bundle.classes[block.from_name] = classes
        bundle.n_examples[block.from_name] = len(examples)
    if not bundle.estimators:
        raise NotEnoughDataError("; ".join(reasons))
    return bundle
