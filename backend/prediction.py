"""Student predictions and uncertainties for Label Studio tasks."""

import numpy as np

from .labels import LabelSpec, task_text
from .sampling.uncertainty import UNCERTAINTY_MEASURES, multilabel
from .store import StudentBundle


def _block_probabilities(bundle: StudentBundle, block, texts: list[str]) -> np.ndarray:
    estimator = bundle.estimators[block.from_name]
    return np.asarray(estimator.predict_proba(texts), dtype=float)


def predict_tasks(spec: LabelSpec | None, bundle: StudentBundle | None, tasks: list, model_version: str) -> list[dict]:
    """Return one `{"result", "score", "model_version"}` item per task, in task order.

    A task the student cannot label (no student yet, no usable text, a task that is not an
    object) gets an empty result and score 0.
    """
    results = [[] for _ in tasks]
    confidences = [[] for _ in tasks]
    if spec is not None and bundle is not None:
        for block in spec.blocks:
            if block.from_name not in bundle.estimators:
                continue
            positions, texts = [], []
            for position, task in enumerate(tasks):
                text = task_text(task.get("data") if isinstance(task, dict) else None, block.value_key)
                if text is not None:
                    positions.append(position)
                    texts.append(text)
            if not texts:
                continue
            proba = _block_probabilities(bundle, block, texts)
            classes = bundle.classes[block.from_name]
            allowed = set(block.choices)
            for row, position in zip(proba, positions):
                if block.multiple:
                    chosen = [label for label, p in zip(classes, row) if p >= 0.5 and label in allowed]
                    confidence = float(np.mean(np.maximum(row, 1.0 - row)))
                else:
                    best = int(np.argmax(row))
                    if classes[best] not in allowed:
                        continue
                    chosen = [classes[best]]
                    confidence = float(row[best])
                if not chosen:
                    continue
                results[position].append(
                    {
                        "from_name": block.from_name,
                        "to_name": block.to_name,
                        "type": "choices",
                        "value": {"choices": chosen},
                    }
                )
                confidences[position].append(confidence)
    return [
        {
            "result": result,
            "score": round(float(np.mean(confidence)), 6) if confidence else 0.0,
            "model_version": model_version,
        }
        for result, confidence in zip(results, confidences)
    ]


def pool_uncertainty(spec: LabelSpec, bundle: StudentBundle, texts_by_key: dict[str, list[str]],
                     positions: np.ndarray, measure: str) -> np.ndarray:
    """Return the student's uncertainty in [0, 1] for pool items at `positions`, averaged over blocks.

    `texts_by_key` maps each data key to the pool's texts; blocks without a fitted estimator count
    as fully uncertain so the sampler still explores them.
    """
    scores = []
    for block in spec.blocks:
        if block.from_name not in bundle.estimators:
            scores.append(np.ones(len(positions)))
            continue
        texts = [texts_by_key[block.value_key][position] for position in positions]
        proba = _block_probabilities(bundle, block, texts)
        if block.multiple:
            scores.append(multilabel(proba))
        else:
            scores.append(UNCERTAINTY_MEASURES[measure](proba))
    return np.mean(scores, axis=0)
