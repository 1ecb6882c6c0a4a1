"""Settings validation, and the student's feature set from MRARU_FEATURES through a retrain."""

import pickle

import pytest

from backend import config
from backend.config import ConfigError, Settings
from backend.labels import parse_label_config
from backend.students.embeddings import SentenceEmbeddings
from backend.students.features import TextFeatures
from backend.training import train_bundle

LABEL_CONFIG = ('<View><Text name="text" value="$text"/><Choices name="sentiment" toName="text">'
                '<Choice value="good"/><Choice value="bad"/></Choices></View>')


def annotations(n_per_class=6):
    items = []
    for i in range(n_per_class):
        for label, text in (("good", f"a wonderful, warm and funny film number {i}"),
                            ("bad", f"a dull, tired and boring film number {i}")):
            items.append({"task_id": len(items) + 1, "data": {"text": text},
                          "result": [{"from_name": "sentiment", "to_name": "text", "type": "choices",
                                      "value": {"choices": [label]}}]})
    return items


def test_settings_features_default_tfidf():
    assert Settings.from_env({}).features == "tfidf"
    assert Settings.from_env({"MRARU_FEATURES": "embeddings"}).features == "embeddings"


def test_settings_invalid_features():
    with pytest.raises(ConfigError, match="MRARU_FEATURES='bow' is not supported; use one of tfidf, embeddings"):
        Settings.from_env({"MRARU_FEATURES": "bow"})


def test_settings_embeddings_without_extra(monkeypatch):
    # The extra is installed for the tests, so its absence is simulated here.
    monkeypatch.setattr(config, "_embeddings_installed", lambda: False)
    with pytest.raises(ConfigError, match=r"needs the optional embeddings extra.*mraru-backend\[embeddings\]"):
        Settings.from_env({"MRARU_FEATURES": "embeddings"})
    assert Settings.from_env({"MRARU_FEATURES": "tfidf"}).features == "tfidf"


def test_settings_invalid_student():
    with pytest.raises(ConfigError, match="MRARU_STUDENT='bert' is not supported; use one of svm, lda"):
        Settings.from_env({"MRARU_STUDENT": "bert"})


@pytest.mark.parametrize("features, first_step", [("tfidf", TextFeatures), ("embeddings", SentenceEmbeddings)])
def test_train_bundle_feature_set(features, first_step):
    spec = parse_label_config(LABEL_CONFIG)
    bundle = train_bundle(spec, annotations(), "svm", features=features)

    estimator = bundle.estimators["sentiment"]
    assert isinstance(estimator.steps[0][1], first_step)
    # The bundle is published as a pickle, so it must survive one.
    restored = pickle.loads(pickle.dumps(estimator))
    predicted = restored.predict(["a wonderful and funny film", "a dull and boring film"])
    assert list(predicted) == ["good", "bad"]
