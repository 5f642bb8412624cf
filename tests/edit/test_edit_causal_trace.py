"""Causal tracing: the replayed grid equals a plain hooked reference, full restoration is the clean run, and
the noise is seeded."""

from __future__ import annotations

import pytest

from neuronmap.edit.dsets import Fact
from neuronmap.edit.experiments.causal_trace import (
    TraceSettings,
    _window,
    average_by_class,
    encode_trace_fact,
    noise_draws,
    position_classes,
    restored_prob,
    subject_noise_std,
    trace_fact,
)
from neuronmap.errors import NeuronmapError

FACT = Fact(0, "The {} is located in the city of", "Eiffel Tower", "Paris")


def _settings(lm, **kw):
    base = {
        "window": 2,
        "samples": 3,
        "noise_std": subject_noise_std(lm, ["Eiffel Tower", "Japan"]),
        "max_rows": 7,
    }
    return TraceSettings(**{**base, **kw})


def _setup(lm, settings, fact=FACT):
    enc, _ = encode_trace_fact(lm, fact, settings.document_start)
    a, b = enc.subject_span
    return enc, noise_draws(lm, b - a, settings, key=f"{fact.prompt}|{fact.subject}")


@pytest.mark.parametrize(
    ("name", "opened"),
    [("tiny-gpt2", False), ("tiny-llama", True), ("tiny-neox", False), ("tiny-gemma", False)],
)
def test_restoring_everything_recovers_the_clean_probability(fresh, name, opened):
    lm = fresh(name)
    settings = _settings(lm, document_start=opened)
    tr = trace_fact(lm, FACT, settings)
    enc, noise = _setup(lm, settings)
    everywhere = range(len(enc.input_ids))
    full = restored_prob(lm, enc, noise, {("hidden", layer): everywhere for layer in range(lm.n_layers)})
    assert full == pytest.approx(tr.p_clean, rel=1e-12)
    assert restored_prob(lm, enc, noise, {}) == pytest.approx(tr.p_corrupted, rel=1e-12)
    assert tr.p_corrupted != pytest.approx(tr.p_clean, rel=1e-3)
    # The last layer's hidden state at the last position is all the prediction reads.
    assert len(tr.tokens) == enc.position + 1 and (tr.tokens[0] == "<|endoftext|>") == opened
    last = tr.table.query("kind == 'hidden' and layer == @lm.n_layers - 1 and position == @enc.position")
    assert float(last["effect"].iloc[0]) == pytest.approx(tr.p_clean, rel=1e-9)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_grid_equals_the_hooked_reference(fresh, name):
    lm = fresh(name)
    settings = _settings(lm)
    fact = Fact(0, "{} is in", "Eiffel Tower", "Paris")  # short: every cell is checked
    tr = trace_fact(lm, fact, settings)
    enc, noise = _setup(lm, settings, fact)
    assert len(tr.table) == 3 * lm.n_layers * (enc.position + 1)
    for row in tr.table.itertuples():
        layers = _window(row.layer, row.kind, settings.window, lm.n_layers)
        ref = restored_prob(lm, enc, noise, {(row.kind, layer): [row.position] for layer in layers})
        assert row.effect == pytest.approx(ref, rel=1e-9, abs=1e-15)
        assert row.indirect == pytest.approx(row.effect - tr.p_corrupted)


def test_noise_is_seeded(fresh):
    lm = fresh("tiny-llama")
    a = trace_fact(lm, FACT, _settings(lm, kinds=("hidden",)))
    b = trace_fact(lm, FACT, _settings(lm, kinds=("hidden",)))
    c = trace_fact(lm, FACT, _settings(lm, kinds=("hidden",), seed=1))
    assert a.p_corrupted == b.p_corrupted and a.table.equals(b.table)
    assert c.p_corrupted != a.p_corrupted


def test_window_matches_rome():
    assert _window(0, "mlp", 10, 30) == list(range(0, 5))
    assert _window(12, "attn", 10, 30) == list(range(7, 17))
    assert _window(29, "mlp", 10, 30) == list(range(24, 30))
    assert _window(12, "hidden", 10, 30) == [12]


def test_position_classes_and_average(fresh):
    assert position_classes((1, 5), 11) == {
        "first subject token": [1],
        "middle subject tokens": [2, 3],
        "last subject token": [4],
        "first subsequent token": [5],
        "further tokens": [6, 7, 8, 9],
        "last token": [10],
    }
    one = position_classes((0, 1), 3)
    assert (
        one["first subject token"] == one["last subject token"] == [0] and one["middle subject tokens"] == []
    )
    lm = fresh("tiny-gpt2")
    tr = trace_fact(lm, FACT, _settings(lm, kinds=("hidden",)))
    avg = average_by_class([tr, tr])
    assert set(avg["position_class"]) == set(position_classes(tr.span, len(tr.tokens)))
    row = avg.query("layer == 0 and position_class == 'middle subject tokens'")
    expected = tr.table.query("layer == 0 and position in [2, 3]")["indirect"].mean()
    assert float(row["indirect"].iloc[0]) == pytest.approx(expected) and int(row["facts"].iloc[0]) == 2


def test_model_prediction_is_the_default_target(fresh):
    lm = fresh("tiny-llama")
    tr = trace_fact(lm, Fact(0, "{} is located in", "Rome", None), _settings(lm, kinds=("hidden",)))
    assert tr.known and tr.target


@pytest.mark.parametrize(
    ("kw", "message"), [({"kinds": ("mlp", "resid")}, "--kind"), ({"samples": 0}, "at least 1")]
)
def test_bad_settings(kw, message):
    with pytest.raises(NeuronmapError, match=message):
        TraceSettings(**kw)
