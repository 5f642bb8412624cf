"""File loaders: each format on valid input; every user mistake a one-line error naming file and line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from neuronmap.contexts import Context, ContextSet, load_contexts
from neuronmap.errors import NeuronmapError


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return path


def error_of(src: str | Path, **kwargs: object) -> str:
    with pytest.raises(NeuronmapError) as info:
        load_contexts(src, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    return message


# --- valid input --------------------------------------------------------------------------------------------


def test_jsonl_fields_groups_and_exact_targets(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.jsonl",
        '{"text": "The capital of France is", "target": " Paris", "subject": "France", "relation": "capital"}'
        "\n"
        "\n"
        '{"text": "Hello", "target": null, "label": 3, "ok": true, "note": null}\r\n',
    )
    loaded = load_contexts(path)
    assert isinstance(loaded, ContextSet)
    assert loaded.source == str(path) and not loaded.builtin and loaded.default_keep == "all"
    assert loaded.contexts == [
        Context("The capital of France is", " Paris", "France", {"relation": "capital"}),
        Context("Hello", None, None, {"label": 3, "ok": True, "note": None}),
    ]


def test_csv_quoted_multiline_cells_and_groups(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "c.csv",
        "\ufefftext,target,subject,pos\n"
        '"Line one\nline two, quoted",next,,NOUN\n'
        "The Eiffel Tower is in,Paris,Eiffel Tower,PROPN\n",
    )
    loaded = load_contexts(path)
    assert loaded.contexts == [
        Context("Line one\nline two, quoted", "next", None, {"pos": "NOUN"}),
        Context("The Eiffel Tower is in", "Paris", "Eiffel Tower", {"pos": "PROPN"}),
    ]


def test_tsv_is_a_table_without_quoting(tmp_path: Path) -> None:
    path = write(tmp_path, "c.tsv", 'text\ttarget\tlabel\nHe said "hi" and\tleft\tx\n')
    assert load_contexts(path).contexts == [Context('He said "hi" and', "left", None, {"label": "x"})]


def test_txt_with_and_without_tab(tmp_path: Path) -> None:
    path = write(tmp_path, "c.txt", "The capital of Japan is\tTokyo\n\n   \nOnce upon a\n")
    assert load_contexts(path).contexts == [
        Context("The capital of Japan is", "Tokyo"),
        Context("Once upon a", None),
    ]


def test_limit_keeps_the_first_n(tmp_path: Path) -> None:
    path = write(tmp_path, "c.txt", "".join(f"line {i}\n" for i in range(10)))
    loaded = load_contexts(path, limit=3)
    assert [c.text for c in loaded] == ["line 0", "line 1", "line 2"] and len(loaded) == 3


def test_limit_still_validates_the_whole_file(tmp_path: Path) -> None:
    path = write(tmp_path, "c.txt", "ok\nok\na\tb\tc\n")
    assert "line 3" in error_of(path, limit=1)


@pytest.mark.parametrize("limit", [0, -2])
def test_non_positive_limit(tmp_path: Path, limit: int) -> None:
    path = write(tmp_path, "c.txt", "hello\n")
    assert "limit" in error_of(path, limit=limit)


def test_counterfact_records(tmp_path: Path) -> None:
    record = {
        "case_id": 0,
        "pararel_idx": 2796,
        "requested_rewrite": {
            "prompt": "The mother tongue of {} is",
            "relation_id": "P103",
            "target_new": {"str": "English", "id": "Q1860"},
            "target_true": {"str": "French", "id": "Q150"},
            "subject": "Danielle Darrieux",
        },
        "paraphrase_prompts": [
            "Shayna does this and Yossel goes still. Danielle Darrieux is a native speaker of"
        ],
        "neighborhood_prompts": ["The mother tongue of Léon Blum is"],
        "attribute_prompts": ["J.\u00a0R.\u00a0R. Tolkien is a native speaker of"],
        "generation_prompts": ["Danielle Darrieux's mother tongue is"],
    }
    second = json.loads(json.dumps(record))
    second["case_id"] = 1
    del second["requested_rewrite"]["relation_id"]
    del second["requested_rewrite"]["target_new"]
    path = write(tmp_path, "counterfact.json", json.dumps([record, second], indent=2))
    loaded = load_contexts(path)
    assert loaded.contexts[0] == Context(
        "The mother tongue of Danielle Darrieux is",
        "French",
        "Danielle Darrieux",
        {"case_id": 0, "relation_id": "P103", "target_new": "English"},
    )
    assert loaded.contexts[1].groups == {"case_id": 1}
    assert loaded.default_keep == "all"


def test_known_1000_records(tmp_path: Path) -> None:
    records = [
        {
            "known_id": 0,
            "subject": "Vinson Massif",
            "attribute": "Antarctica",
            "template": "{} is located in the continent of",
            "prediction": " Antarctica. It is the highest peak",
            "prompt": "Vinson Massif is located in the continent of",
            "relation_id": "P30",
        },
        {
            "known_id": 1,
            "subject": "Beats Music",
            "attribute": "Apple",
            "template": "{} is owned by",
            "prediction": " Apple Inc.",
            "prompt": "Beats Music is owned by",
            "relation_id": "P127",
        },
    ]
    loaded = load_contexts(write(tmp_path, "known_1000.json", json.dumps(records)))
    assert loaded.contexts == [
        Context(
            "Vinson Massif is located in the continent of",
            "Antarctica",
            "Vinson Massif",
            {"known_id": 0, "relation_id": "P30"},
        ),
        Context("Beats Music is owned by", "Apple", "Beats Music", {"known_id": 1, "relation_id": "P127"}),
    ]


def test_json_list_of_plain_records(tmp_path: Path) -> None:
    path = write(tmp_path, "c.json", '[{"text": "a b", "target": "c", "topic": "x"}]')
    assert load_contexts(path).contexts == [Context("a b", "c", None, {"topic": "x"})]


# --- errors: file level -------------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in message and "no such file" in message


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "d.txt").mkdir()
    assert "directory" in error_of(tmp_path / "d.txt")


def test_unknown_extension_lists_supported(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "c.parquet", "x"))
    assert (
        "'.parquet'" in message and ".jsonl" in message and ".csv" in message and "builtin:facts" in message
    )


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "c.txt", b"fine\nalso fine\nbad \xff byte\n"))
    assert "c.txt: line 3" in message and "UTF-8" in message


@pytest.mark.parametrize(
    ("name", "content"),
    [("e.jsonl", "\n \n"), ("e.txt", ""), ("e.csv", "text,target\n"), ("e.json", "[]"), ("e.tsv", "")],
)
def test_empty_set(tmp_path: Path, name: str, content: str) -> None:
    assert error_of(write(tmp_path, name, content)) == f"no contexts in {tmp_path / name}"


# --- errors: record level -----------------------------------------------------------------------------------

JSONL_ERRORS = [
    ('{"text": "a", "target": "b"}\n{"text": "a", "target": "b"\n', 2, "malformed JSON"),
    ('{"text": "a", "target": "b"}\n["a", "b"]\n', 2, "expected a JSON object, got a list"),
    ('{"target": "b"}\n', 1, "missing field 'text'"),
    ('{"text": "a"}\n', 1, "missing field 'target'"),
    ('{"text": 5, "target": "b"}\n', 1, "field 'text' must be a string, got a number"),
    ('{"text": "a", "target": ["b"]}\n', 1, "field 'target' must be a string, got a list"),
    ('{"text": "a", "target": ""}\n', 1, "empty target"),
    ('{"text": "  ", "target": "b"}\n', 1, "empty text"),
    ('{"text": "a", "target": "b", "subject": "z"}\n', 1, "subject 'z' does not occur in the text"),
    ('{"text": "a", "target": "b", "meta": {"x": 1}}\n', 1, "field 'meta' must be a string, number"),
    ('{"text": "a", "target": "b", "p_target": 1}\n', 1, "reserved"),
    ('{"text": "\\ud800", "target": "b"}\n', 1, "lone surrogate"),
    ('{"text": "a", "target": "b", "\\ud800": 1}\n', 1, "a field name holds an invalid character"),
    ('{"text": "a", "target": "b", "x\\ny": [1]}\n', 1, "field 'x\\ny' must be a string, number"),
    (
        '{"text": "a", "target": "b", "n": 1}\n\n{"text": "a", "target": "b", "n": "one"}\n',
        3,
        "field 'n' is a string",
    ),
    ("[" * 100_000 + "\n", 1, "malformed JSON"),
]


@pytest.mark.parametrize(("content", "line", "fragment"), JSONL_ERRORS)
def test_jsonl_errors(tmp_path: Path, content: str, line: int, fragment: str) -> None:
    message = error_of(write(tmp_path, "bad.jsonl", content))
    assert message.startswith(f"{tmp_path / 'bad.jsonl'}: line {line}: ")
    assert fragment in message


TABLE_ERRORS = [
    ("c.csv", "target,subject\nb,\n", 1, "no 'text' column"),
    ("c.csv", "text,subject\na,\n", 1, "no 'target' column"),
    ("c.csv", "text,target,text\na,b,c\n", 1, "appears twice"),
    ("c.csv", "text,target,\na,b,c\n", 1, "column 3 of the header has no name"),
    ("c.csv", "text,target\na,b\nc,d,e\n", 3, "3 cells, but the header names 2 columns"),
    ("c.csv", 'text,target\n"a\nb",c\nd,\n', 4, "empty target"),
    ("c.csv", 'text,target\na,b\n"unterminated,c\n', 3, "malformed CSV"),
    ("c.tsv", "text\ttarget\n\tb\n", 2, "empty text"),
]


@pytest.mark.parametrize(("name", "content", "line", "fragment"), TABLE_ERRORS)
def test_table_errors(tmp_path: Path, name: str, content: str, line: int, fragment: str) -> None:
    message = error_of(write(tmp_path, name, content))
    assert message.startswith(f"{tmp_path / name}: line {line}: ")
    assert fragment in message


@pytest.mark.parametrize(
    ("content", "line", "fragment"),
    [
        ("ok\tyes\na\tb\tc\n", 2, "2 tabs"),
        ("ok\n\nthe text\t\n", 3, "empty target"),
        ("ok\n \tParis\n", 2, "empty text"),
    ],
)
def test_txt_errors(tmp_path: Path, content: str, line: int, fragment: str) -> None:
    message = error_of(write(tmp_path, "c.txt", content))
    assert message.startswith(f"{tmp_path / 'c.txt'}: line {line}: ") and fragment in message


def counterfact(**rewrite: object) -> dict[str, object]:
    base: dict[str, object] = {
        "prompt": "{} plays",
        "subject": "Messi",
        "target_new": {"str": "tennis"},
        "target_true": {"str": "soccer"},
    }
    base.update(rewrite)
    return {"case_id": 7, "requested_rewrite": {k: v for k, v in base.items() if v is not None}}


@pytest.mark.parametrize(
    ("records", "line", "fragment"),
    [
        ('[\n  {"text": "a", "target": "b"},\n  {"text": "a", "target": "b",}\n]', 3, "malformed JSON"),
        ('[{"text": "a", "target": "b"}\n  {"text": "c", "target": "d"}]', 2, "expected ',' or ']'"),
        ('[{"text": "a", "target": "b"}] [', 1, "extra data"),
        ('{"text": "a", "target": "b"}', 1, "expected a JSON list of records, got an object"),
        ("[" * 100_000, 1, "nested too deeply"),
        ('[\n"just a string"\n]', 2, "expected a JSON object, got a string"),
        ('[\n{"foo": 1}\n]', 2, "unrecognised record"),
        ([counterfact(), counterfact(prompt="no placeholder")], 3, "has no '{}'"),
        ([counterfact(), counterfact(target_true=None)], 3, "missing field 'requested_rewrite.target_true'"),
        ([counterfact(target_new={"str": 3})], 2, "'requested_rewrite.target_new.str' must be a string"),
        ([counterfact(subject="")], 2, "empty field 'requested_rewrite.subject'"),
        (
            [{"known_id": 1, "subject": "X", "prompt": "X is", "relation_id": "P1"}],
            2,
            "missing field 'attribute'",
        ),
        (
            [{"known_id": 1, "subject": "Y", "prompt": "X is", "attribute": "Z"}],
            2,
            "does not occur in the text",
        ),
    ],
)
def test_json_errors(tmp_path: Path, records: str | list[object], line: int, fragment: str) -> None:
    content = (
        records if isinstance(records, str) else "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]"
    )
    message = error_of(write(tmp_path, "facts.json", content))
    assert message.startswith(f"{tmp_path / 'facts.json'}: line {line}: ")
    assert fragment in message


def test_json_line_numbers_follow_the_records(tmp_path: Path) -> None:
    records = [{"text": f"t{i}", "target": "x"} for i in range(50)] + [{"text": "t", "target": ""}]
    content = "[\n" + ",\n".join(json.dumps(r, indent=1) for r in records) + "\n]"
    bad_line = 1 + content[: content.rindex("{")].count("\n")  # the line the bad record opens on
    assert f"line {bad_line}: empty target" in error_of(write(tmp_path, "c.json", content))


# --- builtin names and purity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [
        "builtin:nope",
        "builtin:",
        "builtin:facts:",
        "builtin:facts:3",
        "builtin:wiki:",
        "builtin:wiki:0",
        "builtin:wiki:²",
    ],
)
def test_bad_builtin_names(spec: str) -> None:
    message = error_of(spec)
    assert re.search(r"builtin:(facts|wiki)", message)


def test_unknown_builtin_lists_the_available_ones() -> None:
    message = error_of("builtin:nope")
    assert "builtin:facts" in message and "builtin:wiki[:N]" in message


def test_contexts_import_no_torch() -> None:
    code = (
        "import sys, neuronmap.contexts.loaders as L; L.load_contexts('builtin:facts'); "
        "L.load_contexts('builtin:wiki:5'); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
