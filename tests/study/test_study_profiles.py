"""The traces behind the shape measures: causal tracing restricted to the subject's tokens, attribution there."""

from __future__ import annotations

import numpy as np
import pytest

from neuronmap.edit.dsets import Fact
from neuronmap.edit.experiments.causal_trace import TraceSettings, trace_fact
from neuronmap.study.facts import load_study_facts
from neuronmap.study.profiles import causal_profiles, neuron_attribution


def test_subject_last_is_the_full_grid_at_that_position(tiny_models):
    lm = tiny_models("tiny-gpt2")
    fact = Fact(0, "The {} is located in the city of", "Eiffel Tower", "Paris")
    full = trace_fact(lm, fact, TraceSettings(samples=3, noise_std=0.5))
    last = trace_fact(lm, fact, TraceSettings(samples=3, noise_std=0.5, positions="subject_last"))
    at = full.table[full.table["position"] == full.span[1] - 1].reset_index(drop=True)
    assert list(last.table["position"].unique()) == [full.span[1] - 1]
    assert np.allclose(last.table["effect"], at["effect"], atol=1e-12)
    subject = trace_fact(lm, fact, TraceSettings(samples=3, noise_std=0.5, positions="subject"))
    inside = full.table[full.table["position"].between(full.span[0], full.span[1] - 1)].reset_index(drop=True)
    assert sorted(subject.table["position"].unique()) == list(range(*full.span))
    merged = inside.merge(subject.table, on=["kind", "layer", "position"], suffixes=("", "_subject"))
    assert len(merged) == len(inside) and np.allclose(merged["effect"], merged["effect_subject"], atol=1e-12)
    with pytest.raises(Exception, match="positions"):
        TraceSettings(positions="first")


def test_profiles_and_attribution_per_fact(tiny_models):
    lm = tiny_models("tiny-gpt2")
    facts = load_study_facts(limit=3)
    scores, clean = neuron_attribution(lm, facts, progress=False)
    from neuronmap.edit.prompts import encode_fact

    spans = [
        encode_fact(lm.tokenizer, f.prompt, f.subject, f.target_true, "", ()).subject_span for f in facts
    ]
    n_subject = [stop - first for first, stop in spans]
    assert set(scores) == {0, 1, 2}
    assert [scores[f.fact_id].shape for f in facts] == [(n, lm.n_layers, lm.d_mlp) for n in n_subject]
    assert all(0 <= c["p_true"] <= 1 for c in clean.values())
    settings = TraceSettings(samples=2, noise_std=0.5, layers=(0, 1), positions="subject")
    profiles, corrupted = causal_profiles(lm, facts, settings, progress=False)
    assert len(profiles) == sum(3 * 2 * n for n in n_subject)  # kinds x layers x subject tokens per fact
    assert list(corrupted["fact_id"]) == [0, 1, 2]
    last = profiles[profiles["last"]]
    assert (
        last["subject_index"] == last["fact_id"].map(dict(zip(range(3), n_subject, strict=True))) - 1
    ).all()


def test_the_live_token_has_the_largest_mlp_peak_ties_to_the_later():
    import pandas as pd

    from neuronmap.study.api import live_index

    rows = [
        ("mlp", 0, 0, 0.1),
        ("mlp", 1, 0, 0.5),
        ("mlp", 0, 1, 0.3),
        ("mlp", 1, 1, 0.2),
        ("attn", 0, 1, 0.9),
    ]
    profile = pd.DataFrame(rows, columns=["kind", "layer", "subject_index", "indirect"])
    assert live_index(profile) == 0  # the MLP peak, not the attention one
    tied = pd.concat([profile, pd.DataFrame([("mlp", 2, 2, 0.5)], columns=profile.columns)])
    assert live_index(tied) == 2
