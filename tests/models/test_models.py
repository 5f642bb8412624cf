"""Adapters, hooks and loading on every tiny architecture."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neuronmap.errors import NeuronmapError
from neuronmap.models.adapters import Adapter
from neuronmap.models.hooks import NeuronHook
from neuronmap.models.loader import load_model
from neuronmap.models.registry import EMBEDDED, list_models
from neuronmap.models.spec import TINY_NAMES, check_model
from neuronmap.models.tiny import TINY

EXPECTED = {
    "tiny-gpt2": ("gpt2", "transformer.h.1.mlp.c_proj"),
    "tiny-llama": ("llama", "model.layers.1.mlp.down_proj"),
    "tiny-neox": ("gpt_neox", "gpt_neox.layers.1.mlp.dense_4h_to_h"),
    "tiny-gemma": ("gemma", "model.layers.1.mlp.down_proj"),
    "tiny-bert": ("bert", "bert.encoder.layer.1.output.dense"),
}


@pytest.mark.parametrize("name", list(TINY))
def test_adapter_finds_the_output_projections(tiny_models, name):
    lm = tiny_models(name)
    family, last = EXPECTED[name]
    assert lm.adapter.family.name == family
    assert lm.adapter.n_layers == 2 and lm.adapter.d_mlp == 64
    assert lm.adapter.names[-1] == last
    # The neuron weights are the output projection's (d_mlp, d_model) view, whatever the weight layout.
    w = lm.adapter.neuron_weights(0)
    assert w.shape == (64, 32)
    x = torch.randn(3, 64, dtype=w.dtype)
    module = lm.adapter.modules[0]
    bias = module.bias if module.bias is not None else 0
    torch.testing.assert_close(module(x), x @ w + bias)


def test_tiny_models_are_seeded():
    a, b = load_model("tiny-llama"), load_model("tiny-llama")
    assert a.weights_hash == b.weights_hash
    assert a.weights_hash != load_model("tiny-gpt2").weights_hash


def test_gpt2_tokenizer_is_the_real_bpe(tiny_models):
    assert tiny_models("tiny-gpt2").tokenizer("Hello world")["input_ids"] == [15496, 995]


class _Odd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = type("C", (), {"model_type": "weird"})()
        self.blocks = nn.ModuleList([nn.Linear(4, 4)])


def test_unsupported_architecture_lists_supported():
    with pytest.raises(NeuronmapError, match="unsupported architecture 'weird'; supported: gpt2"):
        Adapter(_Odd())


def test_unknown_type_detected_by_shape(tiny_models):
    wrapper = _Odd()
    wrapper.inner = tiny_models("tiny-llama").model
    with pytest.warns(UserWarning, match="found by shape"):
        adapter = Adapter(wrapper)
    assert adapter.family.name == "llama" and adapter.d_mlp == 64


def test_layer_checks(tiny_models):
    adapter = tiny_models("tiny-gpt2").adapter
    assert adapter.resolve_layers([-1, 0, 0]) == [0, 1]
    with pytest.raises(NeuronmapError, match=r"layer 2 out of range: this model has layers 0\.\.1"):
        adapter.resolve_layers([2])


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-neox", "tiny-gemma", "tiny-bert"])
def test_hooks_capture_edit_and_leave_the_model_unchanged(tiny_models, name):
    lm = tiny_models(name)
    ids = lm.tokenizer("The quick brown fox jumps", return_tensors="pt")["input_ids"]

    def out():
        with torch.no_grad():
            o = lm.model(input_ids=ids)
        return o.logits if hasattr(o, "logits") else o.last_hidden_state

    before = out()
    # Capture equals what a plain pre-hook sees.
    seen = {}
    handle = lm.adapter.modules[1].register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].clone()))
    with NeuronHook(lm.adapter, [1]) as hook:
        out()
    handle.remove()
    torch.testing.assert_close(hook.acts[1], seen["x"])
    with NeuronHook(lm.adapter, [1], positions=2) as hook:
        out()
    torch.testing.assert_close(hook.acts[1], seen["x"][:, 2])
    # An edit changes the output inside the block ...
    with NeuronHook(lm.adapter, [0], edit=lambda layer, x: x * 0):
        edited = out()
    assert not torch.equal(edited, before)
    # ... and nothing remains afterwards, also when the block raises.
    with pytest.raises(RuntimeError), NeuronHook(lm.adapter, [0, 1], edit=lambda layer, x: x + 1):
        raise RuntimeError("boom")
    assert torch.equal(out(), before)
    assert all(not m._forward_pre_hooks for m in lm.adapter.modules)
    assert not lm.adapter.input_embeddings()._forward_hooks


def test_grad_capture_with_frozen_weights(tiny_models):
    lm = tiny_models("tiny-llama")
    ids = lm.tokenizer("One two three", return_tensors="pt")["input_ids"]
    assert not any(p.requires_grad for p in lm.model.parameters())
    with torch.enable_grad(), NeuronHook(lm.adapter, grad=True) as hook:
        logits = lm.model(input_ids=ids).logits
        grads = torch.autograd.grad(logits[0, -1, 5], [hook.acts[0], hook.acts[1]])
    assert all(g.shape == (1, ids.shape[1], 64) and g.abs().sum() > 0 for g in grads)


def test_load_errors():
    with pytest.raises(NeuronmapError, match="no such model folder"):
        load_model("./nope/model.bin")
    with pytest.raises(NeuronmapError, match="unknown dtype"):
        load_model("tiny-gpt2", dtype="float8")
    with pytest.raises(NeuronmapError, match="no CUDA GPU|unknown device"):
        load_model("tiny-gpt2", device="cuda:0" if not torch.cuda.is_available() else "tpu")


def test_offline_hub_id_names_embedded_models(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NeuronmapError, match="offline, use an embedded model: smollm2-135m"):
        load_model("someone/not-cached-model")


def test_the_torch_free_model_check_knows_the_tiny_models_and_the_hub_cache(monkeypatch, tmp_path):
    assert set(TINY_NAMES) == set(TINY)  # models.spec's list (no torch) names what models.tiny builds
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NeuronmapError, match="not in the local hub cache.*tiny-gpt2"):
        check_model("someone/not-cached-model")
    # a model in the hub cache passes offline: the loader takes it from there
    snapshot = tmp_path / "models--someone--cached" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    (tmp_path / "models--someone--cached" / "refs").mkdir()
    (tmp_path / "models--someone--cached" / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))
    check_model("someone/cached")


def test_local_folder_round_trip(tmp_path, tiny_models):
    lm = tiny_models("tiny-neox", "float32")
    lm.model.save_pretrained(tmp_path / "m")
    lm.tokenizer.save_pretrained(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.adapter.family.name == "gpt_neox"
    ids = lm.tokenizer("a b c", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(again.model(input_ids=ids).logits, lm.model(input_ids=ids).logits)
    assert again.weights_hash == load_model(tmp_path / "m").weights_hash
    with pytest.raises(NeuronmapError, match="no config.json"):
        load_model(tmp_path)


def test_models_listing():
    rows = {r["name"]: r for r in list_models()}
    assert set(rows) == set(EMBEDDED)
    assert rows["minilm-l6"]["installed"] and rows["minilm-l6"]["cached"]
