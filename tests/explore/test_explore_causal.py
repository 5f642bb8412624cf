"""Causal traces written into a mapped run (``causal-trace --out RUN``) appear in its page: the payload carries
what causal-trace wrote, cell for cell, and the panel shows it in a browser."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from neuronmap.explore.data import load_view
from neuronmap.explore.page import build_payload, write_page

FACTS = [
    ("The Eiffel Tower is located in the city of", " Paris", "Eiffel Tower"),
    ("The Colosseum is located in the city of", " Rome", "Colosseum"),
    ("Big Ben is located in the city of", " London", "Big Ben"),
]


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory) -> Path:
    """tiny-gpt2 traced, mapped and causally traced into one run directory, through the public functions."""
    from neuronmap.edit.api import run_causal_trace
    from neuronmap.graph.api import map_run
    from neuronmap.models.loader import load_model
    from neuronmap.trace.runner import TraceConfig, trace_run

    base = tmp_path_factory.mktemp("causal")
    facts = base / "facts.jsonl"
    facts.write_text("".join(json.dumps({"text": t, "target": y, "subject": s}) + "\n" for t, y, s in FACTS))
    run = base / "run"
    trace_run(TraceConfig(model="tiny-gpt2", contexts=str(facts), top_k=16, threads=1), run, progress=False)
    map_run(run, null_samples=0, stability_seeds=0, export="none")
    lm = load_model("tiny-gpt2")
    run_causal_trace(run, lm, facts=str(facts), samples=2, window=1, keep="all", formats=(), progress=False)
    return run


def test_the_payload_carries_every_cell_of_the_causal_trace(traced_run):
    causal = build_payload(load_view(traced_run))["causal"]
    table = pd.read_parquet(traced_run / "causal_trace.parquet")
    facts = pd.read_parquet(traced_run / "facts.parquet")
    assert causal["kinds"] == ["hidden", "mlp", "attn"] and causal["layers"] == [0, 1]
    assert causal["nFacts"] == len(causal["facts"]) == len(facts) == 3
    for shown, fact in zip(causal["facts"], facts.itertuples(), strict=True):
        assert shown["subject"] == fact.subject and shown["tokens"] == list(fact.tokens)
        assert shown["span"] == [fact.subject_start, fact.subject_end]
        rows = table[table["fact_id"] == fact.fact_id]
        for row in rows.itertuples():
            assert shown["z"][row.kind][row.position][row.layer] == pytest.approx(row.effect, rel=1e-3)
    average = pd.read_parquet(traced_run / "causal_trace_average.parquet")
    assert causal["average"]["facts"] == 3
    for row in average.itertuples():
        cell = causal["average"]["z"][row.kind][causal["average"]["classes"].index(row.position_class)]
        assert cell[row.layer] == pytest.approx(row.effect, rel=1e-3)


def test_a_causal_trace_of_another_model_is_named_not_shown(traced_run, tmp_path):
    run = shutil.copytree(traced_run, tmp_path / "run")
    manifest = json.loads((run / "run.json").read_text())
    manifest["stages"]["causal_trace"]["model"] |= {"weights_hash": "0" * 64, "spec": "other-model"}
    (run / "run.json").write_text(json.dumps(manifest))
    assert build_payload(load_view(run))["causal"] == {
        "note": "the causal trace in this run is of another model (other-model); it is not shown"
    }


def test_a_run_without_a_causal_trace_has_no_panel(run_copy):
    assert build_payload(load_view(run_copy))["causal"] is None


def test_the_panel_switches_facts_and_a_click_filters_the_layer(traced_run, browser, tmp_path):
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: m.type in ("error", "warning") and errors.append(m.text))
    page.goto(write_page(traced_run, tmp_path / "explorer.html").as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=60_000)
    assert page.locator("#nm-causal-panel").is_visible()
    assert "average over 3 facts" in page.locator("#nm-causal-info").inner_text()
    page.select_option("#nm-causal-fact", "1")
    assert "Colosseum" in page.locator("#nm-causal-info").inner_text()
    box = page.locator("#nm-causal .nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + 0.75 * box["width"], box["y"] + 0.5 * box["height"])  # a cell of layer 1
    page.wait_for_function("document.querySelector('#nm-layer').value === '1'")
    page.locator("#nm-causal-panel").screenshot(path=str(tmp_path / "causal.png"))
    assert errors == []
