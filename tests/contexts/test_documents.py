"""Documents for each-token traces: built-in paragraphs and files, each with the line it came from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from neuronmap.contexts.loaders import load_documents
from neuronmap.errors import NeuronmapError


def test_text_files_are_one_document_a_line(tmp_path: Path) -> None:
    path = tmp_path / "docs.txt"
    path.write_text("first\tdocument\n\nsecond one\n")
    docs = load_documents(path)
    assert [d.text for d in docs] == ["first\tdocument", "second one"]  # tabs are text here, not a target
    assert all(d.target is None and d.subject is None for d in docs)
    assert [docs.where(i) for i in range(2)] == [f"{path}: line 1", f"{path}: line 3"]


def test_jsonl_and_csv_keep_group_fields(tmp_path: Path) -> None:
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text(
        json.dumps({"text": "a b c", "topic": "x"}) + "\n" + json.dumps({"text": "d e", "topic": "y"}) + "\n"
    )
    csv = tmp_path / "d.csv"
    csv.write_text('text,topic\n"a, b",x\nc,y\n')
    assert [(d.text, d.groups) for d in load_documents(jsonl)] == [
        ("a b c", {"topic": "x"}),
        ("d e", {"topic": "y"}),
    ]
    assert [(d.text, d.groups) for d in load_documents(csv, limit=1)] == [("a, b", {"topic": "x"})]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "d.jsonl",
            json.dumps({"text": "a", "target": "b"}) + "\n",
            "line 1: a document has no 'target' or 'subject'",
        ),
        ("d.csv", "body\nx\n", "line 1: the header has no 'text' column"),
        ("d.json", "[]", "unsupported file type '.json' for documents"),
        ("d.txt", "\n\n", "no documents in"),
        ("d.jsonl", json.dumps({"text": "a", "doc_id": 3}) + "\n", "field 'doc_id' is reserved"),
    ],
)
def test_bad_document_files_are_one_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(NeuronmapError, match=message):
        load_documents(path)


def test_builtin_wiki_paragraphs_are_a_seeded_sample_whose_prefixes_agree() -> None:
    five, three = load_documents("builtin:wiki:5", seed=4), load_documents("builtin:wiki", limit=3, seed=4)
    assert [d.text for d in three] == [d.text for d in five][:3]
    assert len({d.text for d in five}) == 5 and all(set(d.groups) == {"title", "topic"} for d in five)
    assert [d.text for d in load_documents("builtin:wiki:5", seed=5)] != [d.text for d in five]
    with pytest.raises(NeuronmapError, match="holds no documents"):
        load_documents("builtin:facts")
