"""Labelled data: built-in sets, user files, seeded splits, and one-line errors naming the file and line."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from neuronmap.errors import NeuronmapError
from neuronmap.outliers.data import load_labelled, split_labels


def test_builtin_wiki_topics():
    data = load_labelled("builtin:wiki-topics")
    counts = Counter(data.labels)
    assert len(counts) == 11 and "Uncategorized" not in counts
    assert len(data) > 8000 and all(t.strip() for t in data.texts)
    sample = load_labelled("builtin:wiki-topics", limit=50, seed=3)
    assert len(sample) == 50 and sample.texts == load_labelled("builtin:wiki-topics", limit=50, seed=3).texts
    assert set(sample.texts) <= set(data.texts)


def test_builtin_sentiment():
    data = load_labelled("builtin:sentiment", limit=200, seed=0)
    assert set(data.labels) == {"negative", "positive"}
    assert not any("<br />" in t for t in data.texts)


def test_csv_tsv_jsonl(tmp_path):
    (tmp_path / "a.csv").write_text('review,y\n"good, really",pos\nbad,neg\n"multi\nline",pos\n')
    data = load_labelled(tmp_path / "a.csv", text_column="review", label_column="y")
    assert data.texts == ["good, really", "bad", "multi\nline"] and data.labels == ["pos", "neg", "pos"]
    (tmp_path / "a.tsv").write_text("text\tlabel\nx\t1\ny\t2\n")
    assert load_labelled(tmp_path / "a.tsv").labels == ["1", "2"]
    lines = [{"text": "x", "label": 1}, {"text": "y", "label": True}, {"text": "z", "label": "c"}]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    assert load_labelled(tmp_path / "a.jsonl").labels == ["1", "True", "c"]
    pool = tmp_path / "pool.jsonl"
    pool.write_text('{"text": "unlabelled"}\n')
    assert load_labelled(pool, require_labels=False).labels == [None]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("one.csv", "text,label\na,x\nb,x\n", "one.csv: column 'label' has one class ('x')"),
        ("nolabel.csv", "text,category\na,x\n", "nolabel.csv: line 1: the header has no 'label' column"),
        ("notext.csv", "body,label\na,x\n", "notext.csv: line 1: the header has no 'text' column"),
        ("empty.csv", "text,label\na,x\n  ,y\n", "empty.csv: line 3: empty text"),
        ("emptylabel.csv", "text,label\na,x\nb,\n", "emptylabel.csv: line 3: empty label"),
        ("cells.csv", "text,label\na,x,z\n", "cells.csv: line 2: 3 cells, but the header names 2"),
        (
            "nolabel.jsonl",
            '{"text": "a", "label": "x"}\n{"text": "b"}\n',
            "nolabel.jsonl: line 2: missing field 'label'",
        ),
        (
            "empty.jsonl",
            '{"text": "a", "label": "x"}\n\n{"text": "", "label": "y"}\n',
            "empty.jsonl: line 3: empty text",
        ),
        ("bad.jsonl", '{"text": "a", "label": "x"}\n{"text": \n', "bad.jsonl: line 2: malformed JSON"),
        ("list.jsonl", "[1, 2]\n", "list.jsonl: line 1: expected a JSON object"),
        ("nothing.csv", "", "nothing.csv: empty file"),
        ("data.xlsx", "x", "unsupported file type '.xlsx'"),
    ],
)
def test_bad_files_name_the_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(NeuronmapError) as info:
        load_labelled(path)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_unknown_builtin(tmp_path):
    with pytest.raises(NeuronmapError, match="no such file"):
        load_labelled(tmp_path / "missing.csv")
    with pytest.raises(NeuronmapError, match="unknown built-in data set 'builtin:toxic'"):
        load_labelled("builtin:toxic")


def test_split_is_stratified_seeded_and_keeps_holdout_out():
    labels = ["a"] * 40 + ["b"] * 20 + ["c"] * 10
    split = split_labels(labels, holdout=["c"], seed=1)
    assert (split[60:] == "holdout").all()
    for label, n in (("a", 40), ("b", 20)):
        part = Counter(split[np.asarray(labels) == label])
        assert part["val"] == part["test"] == round(0.15 * n) and part["train"] == n - 2 * round(0.15 * n)
    assert (split == split_labels(labels, holdout=["c"], seed=1)).all()
    assert not (split == split_labels(labels, holdout=["c"], seed=2)).all()


def test_split_errors():
    with pytest.raises(NeuronmapError, match="--holdout: no class 'z'"):
        split_labels(["a", "b"] * 5, holdout=["z"])
    with pytest.raises(NeuronmapError, match="leaves 1 class"):
        split_labels(["a", "b"] * 5, holdout=["b"])
    with pytest.raises(NeuronmapError, match="class 'b' has 2 text"):
        split_labels(["a"] * 5 + ["b"] * 2)
