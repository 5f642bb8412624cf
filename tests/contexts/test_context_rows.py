"""Contexts given as rows (a list of dicts, a DataFrame): the same contexts as the same data in a JSONL file, the
same rules, and every mistake a one-line error naming the row; anything that holds no rows is one too."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuronmap.contexts.loaders import load_contexts, load_documents
from neuronmap.errors import NeuronmapError

ROWS = [
    {
        "text": "The Eiffel Tower is in",
        "target": " Paris",
        "subject": "Eiffel Tower",
        "relation": "city",
        "n": 1,
    },
    {
        "text": "Tokyo is the capital of",
        "target": " Japan",
        "subject": "Tokyo",
        "relation": "capital",
        "n": 2,
    },
    {"text": "The opposite of hot is", "target": None, "subject": None, "relation": "antonym", "n": 3},
]


def error_of(src: object, loader=load_contexts, **kwargs: object) -> str:
    with pytest.raises(NeuronmapError) as info:
        loader(src, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_rows_load_as_the_same_jsonl_file_does(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    from_file = load_contexts(path).contexts
    assert load_contexts(ROWS).contexts == from_file
    assert load_contexts(tuple(ROWS)).contexts == from_file
    assert load_contexts(iter(ROWS)).contexts == from_file
    frame = pd.DataFrame(ROWS)
    assert frame["n"].dtype == np.int64  # numpy values become Python ones
    assert load_contexts(frame).contexts == from_file
    assert load_contexts(ROWS, limit=2).contexts == from_file[:2]


def test_the_source_names_the_data_and_not_the_container() -> None:
    source = load_contexts(ROWS).source
    assert source.startswith("<3 contexts in memory, sha256 ") and source.endswith(">")
    assert load_contexts(pd.DataFrame(ROWS)).source == source
    assert load_contexts(ROWS, limit=1).source == source  # the limit is a parameter of its own
    changed = [dict(ROWS[0], target=" Rome"), *ROWS[1:]]
    assert load_contexts(changed).source != source
    reordered = [ROWS[1], ROWS[0], ROWS[2]]
    assert load_contexts(reordered).source != source
    assert load_documents([{"text": "One document."}]).source.startswith("<1 document in memory, sha256 ")


def test_a_dataframes_missing_cells_are_null() -> None:
    frame = pd.DataFrame(
        {"text": ["a b", "c d"], "target": [" x", np.nan], "subject": [None, "c"], "g": ["u", pd.NA]}
    ).astype({"g": "string"})
    first, second = load_contexts(frame).contexts
    assert first.subject is None and second.target is None and second.subject == "c"
    assert first.groups == {"g": "u"} and second.groups == {"g": None}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"text": "a"}], "contexts: row 0: missing field 'target'"),
        ([ROWS[0], {"text": " ", "target": "x"}], "contexts: row 1: empty text"),
        ([ROWS[0], {"text": "a", "target": ""}], "contexts: row 1: empty target"),
        ([{"text": 3, "target": "x"}], "contexts: row 0: field 'text' must be a string, got a number"),
        (
            [{"text": "a", "target": "x", "subject": "b"}],
            "contexts: row 0: subject 'b' does not occur in the text",
        ),
        ([ROWS[0], "text"], "contexts: row 1: expected a dict of fields, got a string"),
        ([{"text": "a", "target": "x", 7: "y"}], "contexts: row 0: field names must be strings, got 7"),
        ([{"text": "a", "target": "x", "tokens": 1}], "contexts: row 0: field 'tokens' is reserved"),
        ([{"text": "a", "target": "x", "g": [1]}], "contexts: row 0: field 'g' must be a string, number"),
        (
            [{"text": "a", "target": "x", "g": 1}, {"text": "b", "target": "y", "g": "one"}],
            "contexts: row 1: field 'g' is a string here but a number in earlier records",
        ),
        ([], "no contexts: the rows given are empty"),
    ],
)
def test_a_bad_row_is_named(rows: list, message: str) -> None:
    assert error_of(rows).startswith(message)


def test_a_dataframe_row_is_named_by_its_index_label() -> None:
    frame = pd.DataFrame(ROWS, index=[10, 20, 30])
    frame.loc[20, "target"] = ""
    assert error_of(frame) == "contexts: row 20: empty target"
    assert error_of(pd.DataFrame([[1, 2]], columns=["text", "text"])).startswith(
        "contexts: column 'text' appears twice"
    )
    assert error_of(pd.DataFrame(columns=["text", "target"])) == "no contexts: the rows given are empty"


@pytest.mark.parametrize(
    ("src", "got"),
    [
        (3, "int"),
        (2.5, "float"),
        (None, "NoneType"),
        (b"x.jsonl", "bytes"),
        ({"text": "a", "target": "b"}, "dict"),
    ],
)
def test_what_holds_no_rows_is_a_one_line_error(src: object, got: str) -> None:
    message = error_of(src)
    assert message.startswith(
        "contexts must be a file path, 'builtin:NAME', a list of dicts or a pandas DataFrame"
    )
    assert f"(got {got}" in message


def test_documents_as_rows_follow_the_document_rules() -> None:
    docs = load_documents([{"text": "First document.", "topic": "a"}, {"text": "Second one.", "topic": "b"}])
    assert [d.text for d in docs] == ["First document.", "Second one."] and docs.contexts[1].groups == {
        "topic": "b"
    }
    assert docs.contexts[0].target is None
    assert error_of([{"text": "x", "target": "y"}], load_documents).startswith(
        "documents: row 0: a document has no"
    )
    assert error_of(5, load_documents).startswith("documents must be a file path")


def test_where_names_the_row_for_later_errors() -> None:
    frame = pd.DataFrame(ROWS, index=["a", "b", "c"])
    assert load_contexts(frame).where(2) == "contexts: row c"
    assert load_contexts(ROWS).where(1) == "contexts: row 1"
