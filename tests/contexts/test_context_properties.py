"""Property tests: any bytes load or raise NeuronmapError; valid records survive JSONL and CSV round trips."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuronmap.contexts import Context, load_contexts
from neuronmap.contexts.loaders import RESERVED
from neuronmap.errors import NeuronmapError

SUFFIXES = [".jsonl", ".json", ".csv", ".tsv", ".txt"]
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Bytes that reach past the UTF-8 check into each parser: format punctuation, field names, odd line endings.
SYNTAX = st.text(alphabet='{}[]",:\t\n\r \\abtextarg0-9\u2028\x00', max_size=120).map(str.encode)
JSONISH = st.lists(
    st.sampled_from(
        ['{"text": ', '"target": ', '"subject": ', '"a"', "null", "1", ",", "}", "[", "]", "\n", "\t"]
    ),
    max_size=20,
).map(lambda parts: "".join(parts).encode())
ANY_BYTES = st.one_of(st.binary(max_size=200), SYNTAX, JSONISH)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("properties")


@pytest.mark.parametrize("suffix", SUFFIXES)
@FAST
@given(data=ANY_BYTES)
def test_any_bytes_load_or_raise_neuronmap_error(scratch: Path, suffix: str, data: bytes) -> None:
    path = scratch / f"input{suffix}"
    path.write_bytes(data)
    try:
        loaded = load_contexts(path)
    except NeuronmapError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
    else:
        assert loaded.contexts and all(isinstance(c.text, str) and c.text.strip() for c in loaded)


NONBLANK = st.text(min_size=1, max_size=30).filter(str.strip)
KEYS = st.text(min_size=1, max_size=8).filter(
    lambda k: k == k.strip() and k not in RESERVED | {"text", "target", "subject"}
)
VALUES = {
    "string": st.text(max_size=10),
    "int": st.integers(),
    "float": st.floats(allow_nan=False, allow_infinity=False),
    "bool": st.booleans(),
}


@st.composite
def record_sets(draw: st.DrawFn, strings_only: bool) -> list[Context]:
    keys = draw(st.lists(KEYS, max_size=3, unique=True))
    kinds = {key: "string" if strings_only else draw(st.sampled_from(sorted(VALUES))) for key in keys}
    contexts = []
    for _ in range(draw(st.integers(1, 4))):
        text = draw(NONBLANK)
        start = draw(st.integers(0, len(text) - 1))
        piece = text[start : draw(st.integers(start + 1, len(text)))]
        subject = piece if piece.strip() and draw(st.booleans()) else None
        missing = st.nothing() if strings_only else st.none()
        groups = {key: draw(VALUES[kinds[key]] | missing) for key in keys}
        contexts.append(Context(text, draw(NONBLANK), subject, groups))
    return contexts


def as_record(context: Context) -> dict[str, Any]:
    return {"text": context.text, "target": context.target, "subject": context.subject, **context.groups}


@FAST
@given(contexts=record_sets(strings_only=False))
def test_jsonl_round_trip(scratch: Path, contexts: list[Context]) -> None:
    path = scratch / "round.jsonl"
    lines = [json.dumps(as_record(c), ensure_ascii=False) for c in contexts]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load_contexts(path).contexts == contexts


@FAST
@given(contexts=record_sets(strings_only=True))
def test_csv_round_trip(scratch: Path, contexts: list[Context]) -> None:
    path = scratch / "round.csv"
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(as_record(contexts[0])))
    writer.writeheader()
    writer.writerows({**as_record(c), "subject": c.subject or ""} for c in contexts)
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    assert load_contexts(path).contexts == contexts
