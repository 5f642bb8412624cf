"""Sentence embeddings: batched mean pooling equals one text at a time; the cache is keyed and trusted rightly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuronmap.errors import NeuronmapError
from neuronmap.outliers.embed import embed_texts, encode

TEXTS = ["a cat sat on the mat", "storm", "the hammer and the saw were in the shed near the old barn", "rain"]


@pytest.mark.parametrize("name", ["tiny-bert", "tiny-llama"])
def test_batched_mean_pooling_equals_single_texts(tiny_models, name):
    lm = tiny_models(name)
    batched = encode(lm, TEXTS, batch_size=3, progress=False)
    for text, row in zip(TEXTS, batched, strict=True):
        ids = lm.tokenizer(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hidden = lm.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
        np.testing.assert_allclose(row, hidden.mean(0).numpy(), rtol=1e-5, atol=1e-6)


def test_encoder_pooling_uses_the_last_hidden_state(tiny_models):
    lm = tiny_models("tiny-bert")
    ids = lm.tokenizer(TEXTS[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        reference = lm.model.bert(input_ids=ids).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(encode(lm, TEXTS[:1], progress=False)[0], reference, rtol=1e-5, atol=1e-6)


def test_cache_hit_needs_no_model(tiny_models, monkeypatch):
    lm = tiny_models("tiny-bert")
    first, weights_hash = embed_texts(TEXTS, "tiny-bert", loaded=lm, progress=False)
    assert weights_hash == lm.weights_hash

    def refuse(*args, **kwargs):
        raise AssertionError("the encoder was loaded on a cache hit")

    monkeypatch.setattr("neuronmap.models.loader.load_model", refuse)
    again, _ = embed_texts(TEXTS, "tiny-bert", weights_hash=weights_hash, progress=False)
    np.testing.assert_array_equal(first, again)
    # another max_length, other texts: misses (computed with the given model)
    shorter, _ = embed_texts(TEXTS, "tiny-bert", loaded=lm, max_length=4, progress=False)
    assert not np.allclose(shorter, first)


def test_changed_encoder_weights_are_refused(tiny_models):
    lm = tiny_models("tiny-bert")
    with pytest.raises(NeuronmapError, match="other weights than when the classifier was trained"):
        embed_texts(["never seen"], "tiny-bert", weights_hash="0" * 64, loaded=lm, progress=False)


def test_dtype_is_part_of_the_cache_key(tiny_models, monkeypatch, tmp_path):
    monkeypatch.setenv("NEURONMAP_CACHE", str(tmp_path))
    full, weights_hash = embed_texts(TEXTS, "tiny-bert", progress=False)
    half, half_hash = embed_texts(TEXTS, "tiny-bert", dtype="bfloat16", progress=False)
    assert not np.array_equal(full, half)  # not the float32 entry read back
    np.testing.assert_allclose(half, full, rtol=0.1, atol=0.05)  # the same model at lower precision
    monkeypatch.setattr("neuronmap.models.loader.load_model", lambda *a, **k: 1 / 0)
    again, _ = embed_texts(TEXTS, "tiny-bert", weights_hash=half_hash, dtype="bfloat16", progress=False)
    np.testing.assert_array_equal(again, half)
