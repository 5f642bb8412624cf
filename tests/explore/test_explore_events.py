"""An each-token run on the page: an event reads as its document up to its target, the target as spelled there."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from neuronmap.explore.data import load_view
from neuronmap.explore.page import build_payload
from neuronmap.graph.api import map_run
from neuronmap.models.tiny import gpt2_tokenizer
from neuronmap.trace.runner import trace_run


def test_events_show_their_document_prefix_and_target(tmp_path: Path) -> None:
    docs = tmp_path / "docs.txt"
    docs.write_text(
        "The Falklands are islands in the South Atlantic.\nHydrogen and oxygen make water, said the chemist.\n"
    )
    trace_run(out=tmp_path / "run", model="tiny-gpt2", contexts=str(docs), each_token=True, method="activation",
          min_prefix=2, top_k=6, progress=False)  # fmt: skip
    map_run(tmp_path / "run", null_samples=0, stability_seeds=1, progress=False)
    view = load_view(tmp_path / "run")
    rows = np.arange(len(view.contexts))
    before, targets = view.context_texts(rows)
    tok = gpt2_tokenizer()
    documents = [line for line in docs.read_text().splitlines()]
    for row, text, target in zip(view.contexts.itertuples(), before, targets, strict=True):
        ids = tok(documents[row.doc_id])["input_ids"]
        assert text + target == tok.decode(
            ids[: row.position + 2]
        )  # prefix and target, as the tokens spell them
        assert target == tok.decode([ids[row.position + 1]]) == row.target
    payload = build_payload(view)["contexts"]
    assert payload["exact"] is True
    shown = dict(zip(payload["id"], payload["target"], strict=True))
    assert all(shown[i] == targets[int(np.flatnonzero(view.contexts["context_id"] == i)[0])] for i in shown)


def test_an_each_token_map_shuffles_groups_by_document(tmp_path: Path) -> None:
    """The map of events tests a document-level label (topic) by moving it between documents, and a label of
    the events (here their position's parity) among the events of each document."""
    texts = [
        "The Falklands are islands in the South Atlantic ocean, far from the coast.",
        "Hydrogen and oxygen make water, said the chemist to the class of students.",
        "The river runs north past the old mill and into the lake by the town.",
        "Prime numbers have no divisors but one and themselves, as Euclid proved.",
        "The orchestra played the symphony twice, and the hall was full both nights.",
        "A glacier moves slowly, carving valleys into the rock of the mountains.",
    ]
    rows = [{"text": t, "topic": ["place", "science"][i % 2]} for i, t in enumerate(texts)]
    docs = tmp_path / "docs.jsonl"
    docs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = tmp_path / "run"
    trace_run(out=run, model="tiny-gpt2", contexts=str(docs), each_token=True, method="activation", min_prefix=2,
          top_k=6, progress=False)  # fmt: skip
    contexts_file = run / "contexts.parquet"
    contexts = pd.read_parquet(contexts_file)
    contexts["parity"] = (contexts["position"] % 2).map({0: "even", 1: "odd"})
    contexts.to_parquet(contexts_file)
    summary = map_run(run, null_samples=0, stability_seeds=0, progress=False).summary
    assert summary["groups"]["topic"]["shuffle"] == "documents"
    assert summary["groups"]["parity"]["shuffle"] == "within documents"
