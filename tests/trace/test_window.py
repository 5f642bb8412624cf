"""Inputs longer than the model's window: refused with the file and line by default, cut on the left on request."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from neuronmap.errors import NeuronmapError
from neuronmap.models.loader import context_window
from neuronmap.models.tiny import gpt2_tokenizer
from neuronmap.rundir import RunDir
from neuronmap.trace.batch import Encoded, encode, fit_window
from neuronmap.trace.runner import trace_run

LONG = " ".join(f"word{i}" for i in range(200)) + " and the last word is"  # > 256 GPT-2 tokens


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_window_is_read_from_the_config(tiny_models) -> None:
    assert tiny_models("tiny-gpt2").window == 256
    assert tiny_models("tiny-llama").window == 256

    class Bare:
        pass

    assert context_window(Bare()) is None


def test_fit_window_keeps_the_end_and_shifts_positions() -> None:
    enc = Encoded(tuple(range(10)), (7, 8), 8, (5, 7))  # text 0..8, target (7, 8): input holds 7 as its last
    same, cut = fit_window(enc, 10)
    assert (same, cut) == (enc, 0)
    short, cut = fit_window(enc, 6, "left")
    assert cut == 4
    assert short.input_ids == tuple(range(4, 10)) and short.position == 4 and short.subject_span == (1, 3)
    assert short.input_ids[short.position + 1] == enc.input_ids[enc.position + 1]  # teacher forcing intact
    with pytest.raises(NeuronmapError, match="10 tokens, longer than the model.s window of 6$"):
        fit_window(enc, 6)
    with pytest.raises(NeuronmapError, match="would cut its subject"):
        fit_window(enc, 4, "left")
    with pytest.raises(NeuronmapError, match="its target alone is 9 tokens"):
        fit_window(Encoded(tuple(range(10)), tuple(range(9)), 1, None), 3, "left")


def test_a_long_context_is_refused_with_its_line(tmp_path: Path) -> None:
    ctx = _write(
        tmp_path / "ctx.jsonl", [{"text": "Paris is in", "target": "France"}, {"text": LONG, "target": "x"}]
    )
    n = len(encode(gpt2_tokenizer(), LONG, "x").input_ids)
    out = tmp_path / "run"
    with pytest.raises(NeuronmapError) as info:
        trace_run(out=out, contexts=str(ctx), model="tiny-gpt2", progress=False)
    assert str(info.value) == (
        f"{ctx}: line 2: {n} tokens, longer than the model's window of 256 (--truncate left keeps the last 256)"
    )
    assert not out.exists()


def test_truncate_left_traces_the_last_window_and_records_the_cut(tmp_path: Path) -> None:
    rows = [{"text": "Paris is in", "target": "France"}, {"text": LONG, "target": "x"}]
    ctx = _write(tmp_path / "ctx.jsonl", rows)
    full = encode(gpt2_tokenizer(), LONG, "x")
    res = trace_run(
        out=tmp_path / "run",
        contexts=str(ctx),
        model="tiny-gpt2",
        truncate="left",
        keep="all",
        dtype="float64",
        progress=False,
    )
    cut = len(full.input_ids) - 256
    assert res.summary["truncated"] == {"contexts": 1, "tokens_cut": cut, "most_cut": cut}
    stage = RunDir(tmp_path / "run").stage("trace")
    assert stage["summary"]["truncated"] == res.summary["truncated"]
    assert stage["params"]["truncate"] == "left" and stage["window"] == 256
    table = pd.read_parquet(tmp_path / "run" / "contexts.parquet").set_index("context_id")
    assert list(table.loc[1, "input_ids"]) == list(full.input_ids[cut:])
    assert table.loc[1, "position"] == full.position - cut
    assert list(table.loc[0, "input_ids"]) == list(
        encode(gpt2_tokenizer(), "Paris is in", "France").input_ids
    )
    # the cut context's scores come from its last 256 tokens: the same as tracing those tokens as a context
    tail = gpt2_tokenizer().decode(list(full.input_ids[cut:]))
    assert list(encode(gpt2_tokenizer(), tail, "x").input_ids) == list(full.input_ids[cut:])
    ref = trace_run(out=tmp_path / "ref", contexts=str(_write(tmp_path / "t.jsonl", [{"text": tail, "target": "x"}])),
                model="tiny-gpt2", keep="all", dtype="float64", progress=False)  # fmt: skip
    got = res.scores[res.scores.context_id == 1].drop(columns="context_id").reset_index(drop=True)
    want = ref.scores.drop(columns="context_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, rtol=1e-6)  # float64: padding apart, the same sums


def test_without_truncation_the_summary_says_nothing_of_it(tmp_path: Path) -> None:
    ctx = _write(tmp_path / "ctx.jsonl", [{"text": "Paris is in", "target": "France"}])
    res = trace_run(out=tmp_path / "run", contexts=str(ctx), model="tiny-gpt2", keep="all", progress=False)
    assert "truncated" not in res.summary


def test_an_unknown_truncation_is_refused_before_loading(tmp_path: Path) -> None:
    with pytest.raises(NeuronmapError, match="--truncate must be left"):
        trace_run(out=tmp_path / "run", contexts="builtin:facts", model="no-such-model", truncate="right")
