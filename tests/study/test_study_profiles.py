"""The traces behind the shape measures: causal tracing restricted to the last subject token, attribution there."""

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
    with pytest.raises(Exception, match="positions"):
        TraceSettings(positions="first")


def test_profiles_and_attribution_per_fact(tiny_models):
    lm = tiny_models("tiny-gpt2")
    facts = load_study_facts(limit=3)
    scores, clean = neuron_attribution(lm, facts, progress=False)
    assert set(scores) == {0, 1, 2} and scores[0].shape == (lm.n_layers, lm.d_mlp)
    assert all(0 <= c["p_true"] <= 1 for c in clean.values())
    settings = TraceSettings(samples=2, noise_std=0.5, layers=(0, 1), positions="subject_last")
    profiles, corrupted = causal_profiles(lm, facts, settings, progress=False)
    assert len(profiles) == 3 * 3 * 2  # facts x kinds x layers
    assert list(corrupted["fact_id"]) == [0, 1, 2]
