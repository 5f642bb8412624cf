"""Property tests of the loaders of user files: random bytes and random valid/invalid records give either a valid
result or a one-line ``NeuronmapError`` naming the file, never another exception.

Covers the context loaders (JSONL, JSON, CSV, TSV, TXT), the labelled-text loader of the outlier wing (CSV, TSV,
JSONL, with and without required labels) and the text corpus of the statistics (TXT, JSONL). The context
loaders' round trips are tested in tests/contexts/test_context_properties.py.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuronmap.contexts import load_contexts
from neuronmap.edit.corpus import load_corpus
from neuronmap.errors import NeuronmapError
from neuronmap.outliers.data import load_labelled

# No deadline and no speed checks: the CI machine is shared, and a slow example is not a failure.
FAST = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

# Bytes that get past the UTF-8 check into the parsers: punctuation of every format, field names, odd line ends.
SYNTAX = st.text(alphabet='{}[]",:\t\n\r \\textargsubjlbl0-9\u2028\x00\ufeff', max_size=160).map(str.encode)
ANY_BYTES = st.one_of(st.binary(max_size=300), SYNTAX)

FIELDS = ["text", "target", "subject", "label", "group", "context_id", ""]
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", " ", "\n", "Rome", "{}", "\ud800", "a,b", 'x"y', "\t"]),
)
VALUES = st.one_of(
    SCALARS, st.lists(SCALARS, max_size=2), st.dictionaries(st.text(max_size=3), SCALARS, max_size=2)
)
RECORD = st.dictionaries(st.one_of(st.sampled_from(FIELDS), st.text(max_size=6)), VALUES, max_size=5)
# Mostly well-formed records (text, target, label present) with random mistakes mixed in.
GOOD = st.fixed_dictionaries(
    {"text": st.text(min_size=1, max_size=20), "target": st.text(min_size=1, max_size=5), "label": st.sampled_from(["a", "b", 3])},
    optional={"subject": st.text(max_size=5), "extra": SCALARS},
)  # fmt: skip
RECORDS = st.lists(st.one_of(GOOD, GOOD, RECORD), min_size=0, max_size=6)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("loader-properties")


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    lines = []
    for r in records:
        try:
            lines.append(json.dumps(r, ensure_ascii=False))
        except ValueError:
            lines.append(json.dumps(r))
    return "\n".join(lines).encode("utf-8", "surrogatepass")


def _table(records: list[dict[str, Any]], delimiter: str) -> bytes:
    columns = list(dict.fromkeys(k for r in records for k in r))
    if delimiter == "\t":  # TSV has no quoting: a tab or line break in a cell makes a malformed row
        rows = [columns, *(["" if r.get(c) is None else str(r.get(c)) for c in columns] for r in records)]
        return "\n".join("\t".join(row) for row in rows).encode("utf-8", "surrogatepass")
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter)
    writer.writerow(columns)
    for r in records:
        writer.writerow(["" if r.get(c) is None else str(r.get(c)) for c in columns])
    return buffer.getvalue().encode("utf-8", "surrogatepass")


def _encode(records: list[dict[str, Any]], suffix: str) -> bytes:
    if suffix == ".jsonl":
        return _jsonl(records)
    if suffix == ".json":
        return json.dumps(records).encode()
    if suffix == ".txt":
        return "\n".join(f"{r.get('text', '')}\t{r.get('target', '')}" for r in records).encode(
            "utf-8", "surrogatepass"
        )
    return _table(records, "\t" if suffix == ".tsv" else ",")


def _check_error(exc: NeuronmapError, path: Path) -> None:
    message = str(exc)
    assert message and "\n" not in message, repr(message)
    assert str(path) in message, message


def _contexts(path: Path) -> None:
    try:
        loaded = load_contexts(path)
    except NeuronmapError as exc:
        _check_error(exc, path)
    else:
        assert len(loaded) > 0
        for c in loaded:
            assert isinstance(c.text, str) and c.text.strip()
            assert c.target is None or (isinstance(c.target, str) and c.target.strip())
            assert c.subject is None or c.subject in c.text


def _labelled(path: Path, require_labels: bool) -> None:
    try:
        data = load_labelled(path, require_labels=require_labels)
    except NeuronmapError as exc:
        _check_error(exc, path)
    else:
        assert len(data.texts) == len(data.labels) > 0
        assert all(isinstance(t, str) and t.strip() for t in data.texts)
        if require_labels:
            assert all(isinstance(label, str) for label in data.labels) and len(set(data.labels)) >= 2


def _corpus(path: Path) -> None:
    try:
        corpus = load_corpus(path)
    except NeuronmapError as exc:
        _check_error(exc, path)
    else:
        texts = list(corpus.texts())
        assert texts and all(isinstance(t, str) for t in texts)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv", ".txt"])
@FAST
@given(data=ANY_BYTES)
def test_contexts_random_bytes(scratch: Path, suffix: str, data: bytes) -> None:
    path = scratch / f"bytes{suffix}"
    path.write_bytes(data)
    _contexts(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".csv", ".tsv", ".txt"])
@FAST
@given(records=RECORDS)
def test_contexts_random_records(scratch: Path, suffix: str, records: list[dict[str, Any]]) -> None:
    path = scratch / f"records{suffix}"
    path.write_bytes(_encode(records, suffix))
    _contexts(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv"])
@pytest.mark.parametrize("require_labels", [True, False])
@FAST
@given(data=ANY_BYTES)
def test_labelled_random_bytes(scratch: Path, suffix: str, require_labels: bool, data: bytes) -> None:
    path = scratch / f"labelled-bytes{suffix}"
    path.write_bytes(data)
    _labelled(path, require_labels)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".tsv"])
@pytest.mark.parametrize("require_labels", [True, False])
@FAST
@given(records=RECORDS)
def test_labelled_random_records(
    scratch: Path, suffix: str, require_labels: bool, records: list[dict[str, Any]]
) -> None:
    path = scratch / f"labelled-records{suffix}"
    path.write_bytes(_encode(records, suffix))
    _labelled(path, require_labels)


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
@FAST
@given(data=st.one_of(ANY_BYTES, RECORDS.map(_jsonl)))
def test_corpus_random_input(scratch: Path, suffix: str, data: bytes) -> None:
    path = scratch / f"corpus{suffix}"
    path.write_bytes(data)
    _corpus(path)
