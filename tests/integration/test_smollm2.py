"""Integration on the embedded SmolLM2-135M (its cache is filled by `make setup`)."""

from __future__ import annotations

import json

import pytest
import torch

from neuronmap.models.loader import load_model
from neuronmap.trace.batch import collate, encode, forward_logits
from neuronmap.trace.runner import trace_run

pytestmark = pytest.mark.integration

FIVE = [
    ("The Eiffel Tower is located in the city of", "Paris", "Eiffel Tower"),
    ("The capital of Japan is", "Tokyo", "Japan"),
    ("The capital of France is", "Paris", "France"),
    ("The Colosseum is located in the city of", "Rome", "Colosseum"),
    ("The Statue of Liberty is located in the city of", "New York", "Statue of Liberty"),
]


@pytest.fixture(scope="module")
def smol():
    return load_model("smollm2-135m")


def test_eiffel_tower_predicts_paris(smol):
    enc = encode(smol.tokenizer, FIVE[0][0], FIVE[0][1])
    batch = collate([enc], smol.tokenizer.pad_token_id)
    with torch.no_grad():
        logits = forward_logits(smol.model, batch)
    top = int(logits[0, enc.position].argmax())
    assert smol.tokenizer.decode([top]) == " Paris"
    assert smol.adapter.n_layers == 30 and smol.adapter.d_mlp == 1536


def test_trace_five_facts(tmp_path, smol):
    path = tmp_path / "five.jsonl"
    path.write_text("".join(json.dumps({"text": t, "target": a, "subject": s}) + "\n" for t, a, s in FIVE))
    res = trace_run(
        out=tmp_path / "run",
        contexts=str(path),
        model="smollm2-135m",
        loaded=smol,
        keep="known",
        top_k=50,
        progress=False,
    )
    ctx, scores = res.contexts, res.scores
    assert res.summary["contexts_kept"] >= 4
    assert (ctx["p_target"] > 0.1).all() and ctx["known"].all()
    assert (scores.groupby("context_id").size() == 50).all()
    assert scores["layer"].between(0, 29).all() and scores["neuron"].between(0, 1535).all()
    manifest = json.loads((tmp_path / "run" / "run.json").read_text())
    assert manifest["model"]["arch"] == "llama" and manifest["stages"]["trace"]["status"] == "complete"


def test_smollm2_as_the_outliers_encoder(smol):
    """A causal LM as the frozen encoder: right padding keeps each text's mean-pooled state as if alone."""
    from neuronmap.outliers.embed import embed_texts

    texts = [
        "A short one.",
        "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
        "Cats purr.",
    ]
    batched, digest = embed_texts(texts, "smollm2-135m", loaded=smol, use_cache=False, progress=False)
    assert batched.shape == (3, 576) and digest == smol.weights_hash
    for i, text in enumerate(texts):
        alone, _ = embed_texts([text], "smollm2-135m", loaded=smol, use_cache=False, progress=False)
        assert abs(alone[0] - batched[i]).max() < 1e-4 * max(1.0, abs(alone[0]).max())
    assert abs(batched[0] - batched[2]).max() > 1e-2  # different texts, different embeddings
