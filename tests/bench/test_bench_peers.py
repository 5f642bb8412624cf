"""The peers benchmark's agreement checks on a tiny GPT-2-shaped model (skipped without the `bench` extra)."""

from __future__ import annotations

import pytest
import torch

peers = pytest.importorskip("bench.bench_peers")
if peers.missing_peers():
    pytest.skip("the peers (pip install -e '.[bench]') are not installed", allow_module_level=True)

from neuronmap.models.loader import load_model  # noqa: E402
from neuronmap.trace.methods import attribution, integrated_gradients  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = peers.build_model(tmp_path_factory.mktemp("gpt2"), {"n_layer": 2, "n_embd": 32, "n_head": 4})
    lm = load_model(str(folder))
    lm.model.set_attn_implementation("eager")
    facts = peers.single_token_facts(lm, 6)
    return folder, lm, facts


@pytest.mark.parametrize("peer", ["TransformerLensAttribution", "NnsightAttribution"])
def test_attribution_agrees_with_the_peers(tiny, peer):
    folder, lm, facts = tiny
    batch = peers.batches_of(lm, facts, 3)[0]
    layers = list(range(lm.n_layers))
    ours = attribution(lm, batch, layers).scores
    theirs = getattr(peers, peer)(folder, lm.tokenizer, layers)(batch)
    assert theirs.shape == ours.shape
    assert peers.pearson(ours, theirs) >= peers.PEARSON_MIN
    torch.testing.assert_close(theirs.detach().float(), ours, rtol=1e-3, atol=1e-6)


def test_knowledge_neurons_scores_the_same_neurons(tiny):
    folder, lm, facts = tiny
    batch = peers.batches_of(lm, facts[:2], 2)[0]
    ours = integrated_gradients(lm, batch, list(range(lm.n_layers)), steps=10).scores
    theirs = peers.KnowledgeNeuronsIG(folder, lm.tokenizer, steps=10)(facts[:2])
    assert theirs.shape == ours.shape
    # a probability against a log-probability, two quadrature rules: related, not equal
    assert peers.pearson(ours, theirs) > 0.5


def test_knowledge_neurons_definition_gives_its_scores(tiny):
    """With its metric (probability) and points (linspace), neuronmap's IG is knowledge-neurons' IG."""
    folder, lm, facts = tiny
    batch = peers.batches_of(lm, facts[:2], 2)[0]
    layers = list(range(lm.n_layers))
    ours = integrated_gradients(lm, batch, layers, steps=10, metric="prob", rule="linspace").scores
    theirs = peers.KnowledgeNeuronsIG(folder, lm.tokenizer, steps=10)(facts[:2])
    assert peers.pearson(ours, theirs) >= peers.PEARSON_MIN
    torch.testing.assert_close(theirs.detach().float(), ours, rtol=1e-3, atol=1e-7)
