"""Second moments: equal to a brute-force E[k k^T], cached, and read from every corpus kind."""

from __future__ import annotations

import json

import pytest
import torch

from neuronmap.edit.corpus import load_corpus
from neuronmap.edit.stats import second_moments, stats_path
from neuronmap.errors import NeuronmapError
from neuronmap.models.hooks import NeuronHook


def _brute_force(lm, texts, layer, n_tokens, max_length):
    """Every text alone, unpadded, its keys stacked in order, the first n_tokens averaged."""
    keys = []
    for text in texts:
        ids = lm.tokenizer(text)["input_ids"][:max_length]
        with torch.no_grad(), NeuronHook(lm.adapter, [layer]) as hook:
            lm.model(input_ids=torch.tensor([ids]))
        keys.append(hook.acts[layer][0])
    k = torch.cat(keys)[:n_tokens].double()
    return k.T @ k / len(k), len(k)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_second_moment_equals_brute_force(fresh, corpus_file, corpus_texts, name):
    lm = fresh(name)
    # 70 tokens end inside a batch; max_length 12 cuts texts; batch_size 3 pads rows of different lengths.
    got = second_moments(lm, [0, 1], corpus=str(corpus_file), n_tokens=70, max_length=12, batch_size=3)
    for layer in (0, 1):
        expected, n = _brute_force(lm, corpus_texts, layer, 70, 12)
        assert got[layer].n_tokens == n == 70
        torch.testing.assert_close(got[layer].mom2, expected, rtol=1e-12, atol=1e-12)
        assert got[layer].mom2.dtype == torch.float64 and not got[layer].cached


def test_cache_is_hit_the_second_time(fresh, corpus_file, monkeypatch):
    lm = fresh("tiny-llama")
    first = second_moments(lm, [1], corpus=str(corpus_file), n_tokens=50, max_length=16)[1]
    assert first.path is not None and first.path.is_file()
    assert first.meta["tokens"] == "50" and first.meta["weights_hash"] == lm.weights_hash

    def no_forward(*args, **kwargs):
        raise AssertionError("the model ran although the statistics were cached")

    monkeypatch.setattr(lm.model, "forward", no_forward)
    again = second_moments(lm, [1], corpus=str(corpus_file), n_tokens=50, max_length=16)[1]
    assert again.cached and again.n_tokens == 50 and again.n_texts == first.n_texts
    assert torch.equal(again.mom2, first.mom2)
    # Another count, length or corpus is another entry.
    corpus = load_corpus(corpus_file)
    assert stats_path(lm, 1, corpus, 50, 16) != stats_path(lm, 1, corpus, 60, 16)
    assert stats_path(lm, 1, corpus, 50, 16) != stats_path(lm, 1, corpus, 50, 8)


def test_corpus_shorter_than_requested_records_what_it_used(fresh, corpus_file, corpus_texts):
    lm = fresh("tiny-gpt2")
    st = second_moments(lm, [0], corpus=str(corpus_file), n_tokens=10_000, max_length=64)[0]
    assert st.n_texts == len(corpus_texts) and st.n_tokens < 10_000
    assert st.meta["tokens_requested"] == "10000" and int(st.meta["tokens"]) == st.n_tokens


def test_jsonl_corpus_equals_txt(fresh, tmp_path, corpus_file, corpus_texts):
    lm = fresh("tiny-llama")
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(corpus_texts)))
    a = second_moments(lm, [0], corpus=str(jsonl), n_tokens=40, max_length=16)[0]
    b = second_moments(lm, [0], corpus=str(corpus_file), n_tokens=40, max_length=16)[0]
    torch.testing.assert_close(a.mom2, b.mom2)


def test_builtin_wiki_corpus_is_shuffled_and_stable():
    a, b = load_corpus("builtin:wiki"), load_corpus("builtin:wiki")
    first = [t for t, _ in zip(a.texts(), range(3), strict=False)]
    assert first == [t for t, _ in zip(b.texts(), range(3), strict=False)]
    assert a.digest == b.digest != load_corpus("builtin:wiki", seed=1).digest


@pytest.mark.parametrize(
    ("corpus", "message"),
    [("missing.txt", "no such corpus file"), ("builtin:books", "unknown built-in corpus"), ("x.csv", "")],
)
def test_bad_corpus(tmp_path, corpus, message):
    if corpus == "x.csv":
        (tmp_path / corpus).write_text("a,b\n")
        corpus, message = str(tmp_path / corpus), r"\.txt"
    with pytest.raises(NeuronmapError, match=message):
        load_corpus(corpus)


def test_bad_jsonl_line(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "fine"}\n{"txt": "oops"}\n')
    with pytest.raises(NeuronmapError, match="line 2: needs a string field 'text'"):
        load_corpus(path)
