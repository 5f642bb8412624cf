"""Targets the model does not predict are counted, recorded and warned about (trace, each-token trace, causal
trace, the page); and a per-context trace's progress moves per batch, not per part.

The expected counts come from an independent forward pass of the Hugging Face model on the text followed by the
target (teacher forcing), not from the trace's own code."""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from neuronmap.trace import runner
from neuronmap.trace.runner import trace_run
from neuronmap.trace.targets import WARN_SHARE, target_line, target_summary

TEXTS = [
    "The capital of France is",
    "Once upon a time there was a",
    "The Eiffel Tower is located in the city of",
    "Water is made of hydrogen and",
    "The opposite of hot is",
    "My favourite colour is",
]


def _reference(lm, text: str, target: str) -> tuple[bool, float]:
    """(every target token is top-1, p(target)) from one plain forward pass, with the README's spacing rule."""
    tok = lm.tokenizer
    sep = "" if text[-1].isspace() or target[0].isspace() else " "
    head = tok(text)["input_ids"]
    whole = tok(text + sep + target)["input_ids"]
    assert whole[: len(head)] == head
    target_ids = whole[len(head) :]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([whole], device=lm.device)).logits[0].double()
    logp = torch.log_softmax(logits[len(head) - 1 : len(whole) - 1], dim=-1)
    top1 = all(int(logp[i].argmax()) == t for i, t in enumerate(target_ids))
    p = float(torch.exp(sum(logp[i, t] for i, t in enumerate(target_ids))))
    return top1, p


@pytest.fixture(scope="module")
def mixed(tmp_path_factory, tiny_models):
    """Contexts whose targets are the model's own top prediction (the first half) or a word it does not predict."""
    lm = tiny_models("tiny-gpt2", "float32")
    rows = []
    for i, text in enumerate(TEXTS):
        if i < 2:
            with torch.no_grad():
                ids = torch.tensor([lm.tokenizer(text)["input_ids"]])
                top = int(lm.model(input_ids=ids).logits[0, -1].argmax())
            target = lm.tokenizer.decode([top])
            assert target[:1] == " "  # so the spacing rule leaves it as it is (true of the seeded tiny-gpt2)
        else:
            target = " zebra"
        rows.append({"text": text, "target": target})
    path = tmp_path_factory.mktemp("targets") / "mixed.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    expected = [_reference(lm, r["text"], r["target"]) for r in rows]
    return lm, path, rows, expected


def test_summary_rule():
    s = target_summary([True, True, True, False], [0.5, 0.4, 0.3, 0.001])
    assert s == {"n": 4, "not_top1": 1, "share_not_top1": 0.25, "median_p": 0.35, "median_p_not_top1": 0.001,
                 "warn": True}  # fmt: skip
    assert WARN_SHARE == 0.25 and target_line(s).startswith("warning: 1 of 4 contexts (25%)")
    below = target_summary([True] * 4 + [False], [0.5] * 4 + [0.01])
    assert not below["warn"] and target_line(below).startswith("targets: 1 of 5 contexts")
    none = target_summary([True, True], [0.5, 0.7])
    assert none["not_top1"] == 0 and none["median_p_not_top1"] is None and not none["warn"]


def test_trace_records_targets_not_top1(tmp_path, mixed):
    lm, path, _, expected = mixed
    res = trace_run(out=tmp_path / "run", contexts=str(path), model="tiny-gpt2", loaded=lm, keep="all",
                    top_k=3, progress=False)  # fmt: skip
    t = res.summary["targets"]
    missed = [p for top1, p in expected if not top1]
    assert 0 < len(missed) < len(expected)  # both kinds present
    assert t["n"] == len(expected) and t["not_top1"] == len(missed)
    assert t["median_p_not_top1"] == pytest.approx(float(np.median(missed)), rel=1e-3)
    assert t["median_p"] == pytest.approx(float(np.median([p for _, p in expected])), rel=1e-3)
    assert t["warn"] == (len(missed) / len(expected) >= WARN_SHARE)
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["stages"]["trace"]["summary"]["targets"] == t


def test_keep_known_traces_only_top1_targets(tmp_path, mixed):
    lm, path, _, expected = mixed
    res = trace_run(out=tmp_path / "run", contexts=str(path), model="tiny-gpt2", loaded=lm, keep="known",
                    top_k=3, progress=False)  # fmt: skip
    assert res.summary["targets"]["not_top1"] == 0
    assert res.summary["targets"]["n"] == sum(top1 for top1, _ in expected)


def test_cli_prints_the_warning(tmp_path, mixed):
    from neuronmap.cli import app

    _, path, _, _ = mixed
    out = tmp_path / "run"
    result = CliRunner().invoke(app, ["trace", "--model", "tiny-gpt2", "--contexts", str(path), "--keep", "all",
                                      "--top-k", "3", "--out", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    line = next(x for x in result.output.splitlines() if "top-1 prediction" in x)
    assert line.startswith("warning: 4 of 6 contexts (67%)"), line


def test_each_token_trace_counts_events(tmp_path, tiny_models):
    lm = tiny_models("tiny-gpt2", "float32")
    docs = tmp_path / "docs.txt"
    docs.write_text("The city of Paris is the capital of France and its largest city.\n"
                    "Water is a chemical compound of hydrogen and oxygen atoms.\n")  # fmt: skip
    res = trace_run(out=tmp_path / "run", contexts=str(docs), model="tiny-gpt2", loaded=lm, each_token=True,
                    method="direct", min_prefix=4, progress=False)  # fmt: skip
    events = pd.read_parquet(tmp_path / "run" / "contexts.parquet")
    documents = pd.read_parquet(tmp_path / "run" / "documents.parquet")
    missed = 0
    for doc_id, group in events.groupby("doc_id"):
        ids = list(documents.loc[documents["doc_id"] == doc_id, "token_ids"].iloc[0])
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([ids])).logits[0]
        missed += sum(int(logits[p].argmax()) != ids[p + 1] for p in group["position"])
    t = res.summary["targets"]
    assert t["n"] == len(events) and t["not_top1"] == missed > 0


def test_causal_trace_records_targets(tmp_path, mixed, monkeypatch):
    from neuronmap.edit.api import run_causal_trace

    monkeypatch.setenv("NEURONMAP_CACHE", str(tmp_path / "cache"))
    lm, _, rows, expected = mixed
    facts = tmp_path / "facts.jsonl"
    subject = {0: "France", 1: "time", 2: "Eiffel Tower", 3: "Water", 4: "hot", 5: "colour"}
    facts.write_text("".join(json.dumps({**r, "subject": subject[i]}) + "\n" for i, r in enumerate(rows)))
    s = run_causal_trace(tmp_path / "ct", lm, facts=str(facts), kinds=("hidden",), samples=2, window=1,
                         keep="all", formats=(), document_start=False, progress=False)  # fmt: skip
    t = s["targets"]
    assert t["n"] == len(rows) and t["not_top1"] == sum(not top1 for top1, _ in expected)
    stored = json.loads((tmp_path / "ct" / "causal_trace_summary.json").read_text())
    assert stored["targets"] == t


def test_the_page_shows_targets(tmp_path, mixed):
    from neuronmap.explore.data import load_view
    from neuronmap.explore.page import build_payload
    from neuronmap.graph.api import map_run

    lm, path, _, expected = mixed
    run = tmp_path / "run"
    trace_run(out=run, contexts=str(path), model="tiny-gpt2", loaded=lm, keep="all", top_k=8, progress=False)
    map_run(run, null_samples=0, stability_seeds=0, export="none")
    meta = build_payload(load_view(run))["meta"]
    assert meta["targets"]["not_top1"] == sum(not top1 for top1, _ in expected)
    assert meta["targets"]["line"].startswith("warning: 4 of 6 contexts")


def test_progress_moves_per_batch_within_a_part(tmp_path, mixed, monkeypatch):
    """6 contexts in batches of 1 and one part of 256: the bar moves once per batch, not once per part."""
    lm, path, _, _ = mixed
    calls: list[tuple[str, int]] = []

    class Bar:
        def advance(self, n: int = 1) -> None:
            calls.append(("advance", n))

        def skip(self, n: int) -> None:
            calls.append(("skip", n))

    @contextmanager
    def fake(description, total, unit="items", enabled=True):
        yield Bar()

    monkeypatch.setattr(runner, "progress_bar", fake)
    trace_run(out=tmp_path / "run", contexts=str(path), model="tiny-gpt2", loaded=lm, keep="all", top_k=3,
              batch_size=1, progress=True)  # fmt: skip
    assert [c for c in calls if c[0] == "advance"] == [("advance", 1)] * len(TEXTS)


def test_an_empty_set_has_a_line():
    assert target_line(target_summary([], [])) == "targets: no contexts"
