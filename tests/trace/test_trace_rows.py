"""Tracing contexts given as rows (a list of dicts, a DataFrame), as a notebook does: the same tables as the same
data in a JSONL file, run.json naming the data so a rerun reuses or refuses, and one-line errors naming the row."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from neuronmap.errors import NeuronmapError
from neuronmap.rundir import CONTEXTS, DOCUMENTS, DROPPED, SCORES, RunDir
from neuronmap.trace.runner import trace_run

FACTS = [
    {"text": "The Eiffel Tower is located in the city of", "target": " Paris", "subject": "Eiffel Tower",
     "relation": "city", "rank": 1},
    {"text": "Tokyo is the capital of", "target": " Japan", "subject": "Tokyo", "relation": "capital", "rank": 2},
    {"text": "The Colosseum is in", "target": " Rome", "subject": "Colosseum", "relation": "city", "rank": 3},
    {"text": "Water is made of hydrogen and", "target": None, "subject": "Water", "relation": "chem", "rank": 4},
    {"text": "The opposite of hot is", "target": " cold", "subject": "hot", "relation": "antonym", "rank": 5},
]  # fmt: skip
DOCS = [
    {"text": "The river runs north past the old mill and into the lake by the town.", "topic": "geo"},
    {"text": "Prime numbers have no divisors but one and themselves, as Euclid proved.", "topic": "math"},
]


def trace(out: Path, contexts: object, lm, **kw):
    return trace_run(out=out, contexts=contexts, model="tiny-gpt2", loaded=lm, progress=False, top_k=8, **kw)


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def same_tables(a: Path, b: Path, names: tuple[str, ...]) -> None:
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def lm(tiny_models):
    return tiny_models("tiny-gpt2")


def test_rows_trace_to_the_same_tables_as_a_jsonl_file(tmp_path, lm):
    from_file = trace(tmp_path / "file", str(jsonl(tmp_path / "facts.jsonl", FACTS)), lm)
    from_list = trace(tmp_path / "list", FACTS, lm)
    from_frame = trace(tmp_path / "frame", pd.DataFrame(FACTS), lm)
    for result in (from_list, from_frame):
        same_tables(from_file.run.path, result.run.path, (CONTEXTS, DROPPED, SCORES))
        assert result.summary["contexts_kept"] == len(FACTS)
    params = RunDir(tmp_path / "list").stage("trace")["params"]
    assert params["contexts"].startswith("<5 contexts in memory, sha256 ")
    assert RunDir(tmp_path / "frame").stage("trace")["params"]["contexts"] == params["contexts"]


def test_documents_as_rows_trace_each_token_as_a_file_does(tmp_path, lm):
    kw = {"each_token": True, "method": "direct", "min_prefix": 4}
    from_file = trace(tmp_path / "file", str(jsonl(tmp_path / "docs.jsonl", DOCS)), lm, **kw)
    from_frame = trace(tmp_path / "frame", pd.DataFrame(DOCS), lm, **kw)
    same_tables(from_file.run.path, from_frame.run.path, (DOCUMENTS, CONTEXTS, SCORES))


def test_a_rerun_reuses_the_same_rows_and_refuses_other_rows(tmp_path, lm):
    out = tmp_path / "run"
    trace(out, FACTS, lm)
    again = trace(out, pd.DataFrame(FACTS), lm)  # the same data, in another container
    assert again.skipped
    changed = [dict(FACTS[0], target=" Lyon"), *FACTS[1:]]
    with pytest.raises(NeuronmapError) as info:
        trace(out, changed, lm)
    message = str(info.value)
    assert "holds a trace with other parameters (contexts: '<5 contexts in memory, sha256 " in message
    assert "\n" not in message
    assert trace(out, changed, lm, force=True).summary["contexts_kept"] == len(FACTS)
    assert trace(out, changed, lm).skipped


def test_a_bad_row_or_no_rows_is_a_one_line_error_before_anything_is_written(tmp_path, lm):
    out = tmp_path / "run"
    bad = [FACTS[0], {"text": "No target here"}]
    for contexts, message in [
        (bad, "contexts: row 1: missing field 'target'"),
        (
            pd.DataFrame(FACTS, index=list("abcde")).drop(columns="target"),
            "contexts: row a: missing field 'target'",
        ),
        (5, "contexts must be a file path, 'builtin:NAME', a list of dicts or a pandas DataFrame (got int)"),
        ({"text": "a", "target": "b"}, "(got dict: pass a list of dicts, one per context)"),
    ]:
        with pytest.raises(NeuronmapError) as info:
            trace(out, contexts, lm)
        assert message in str(info.value) and "\n" not in str(info.value)
    assert not out.exists()
    # A context the tracer refuses later is named by its row too.
    no_subject = [FACTS[0], {"text": "Paris is in", "target": " France"}]
    with pytest.raises(NeuronmapError, match=r"^contexts: row 1: the context has no subject"):
        trace(out, no_subject, lm, method="causal")
    with pytest.raises(NeuronmapError, match=r"^documents: row 0: a document has no 'target'"):
        trace(out, FACTS, lm, each_token=True, method="direct")
