"""ROME hyper-parameters as data: one JSON file per family, strict keys."""

from __future__ import annotations

import json

import pytest

from neuronmap.edit.hparams import RomeHparams, hparams_names, load_hparams
from neuronmap.errors import NeuronmapError


def test_rome_paper_settings_for_gpt2():
    assert load_hparams(model="openai-community/gpt2-xl").layer == 17
    assert load_hparams(model="gpt2-large").layer == 12
    medium = load_hparams(model="gpt2-medium")
    assert medium.layer == 8 and medium.clamp_norm_factor == 3.0
    assert medium.context_template_length_params == ((5, 10), (10, 10))


def test_embedded_and_default_files():
    assert {"default", "smollm2-135m", "gemma3-270m"} <= set(hparams_names())
    assert load_hparams(model="smollm2-135m").layer is not None
    default = load_hparams(model="tiny-llama")
    assert default.layer is None and default.resolve_layer(48) == 17
    assert load_hparams("gpt2-xl") == load_hparams(model="gpt2-xl")


def test_round_trip_through_json(tmp_path):
    hp = load_hparams("gpt2-xl").replace(layer=3)
    path = tmp_path / "hp.json"
    path.write_text(json.dumps(hp.to_dict()))
    assert load_hparams(path) == hp
    assert hp.resolve_layer(10) == 3 and hp.replace(layer=-1).resolve_layer(10) == 9


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"layer": 1, "v_lr2": 0.1}, "unknown ROME hparams"),
        ({"layer": None}, "'layer' or 'relative_layer'"),
        ({"layer": 1, "kl_prompts": ["{} is"], "v_num_grad_steps": 0}, "at least 1"),
        ({"layer": 1, "kl_prompts": ["is a"]}, "exactly one"),
        ({"layer": 1, "key_constraint": "both"}, "key_constraint"),
    ],
)
def test_bad_hparams(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(NeuronmapError, match=message):
        load_hparams(path)


def test_unknown_name():
    with pytest.raises(NeuronmapError, match="no ROME hparams named"):
        load_hparams("gpt5")
    assert RomeHparams(layer=0).kl_prompts == ("{} is a",)


@pytest.mark.parametrize("n_layers", range(1, 61))
def test_a_relative_layer_is_never_the_last(n_layers):
    """The last layer's output at the subject reaches no later position: an edit there changes nothing at the
    prompt's end. The default file places edits by relative layer."""
    layer = load_hparams(model="tiny-llama").resolve_layer(n_layers)
    assert 0 <= layer < max(n_layers - 1, 1)
    assert RomeHparams(relative_layer=0.99).resolve_layer(n_layers) == max(n_layers - 2, 0)


def test_kl_direction_defaults_to_rome_and_is_checked(tmp_path):
    assert RomeHparams(layer=0).kl_direction == "edited-clean"
    assert load_hparams(model="smollm2-135m").kl_direction == "edited-clean"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"layer": 1, "kl_direction": "both"}))
    with pytest.raises(NeuronmapError, match="kl_direction must be one of edited-clean, clean-edited"):
        load_hparams(path)


def test_kl_term_against_roms_call_and_a_hand_computation():
    import numpy as np
    import torch

    from neuronmap.edit.algorithm.values import kl_term

    gen = torch.Generator().manual_seed(0)
    clean = torch.randn(3, 11, generator=gen, dtype=torch.float64).log_softmax(-1)
    edited = torch.randn(3, 11, generator=gen, dtype=torch.float64).log_softmax(-1)
    # ROME's compute_v: kl_div(kl_distr_init, kl_log_probs, log_target=True, reduction="batchmean")
    rome = torch.nn.functional.kl_div(clean, edited, log_target=True, reduction="batchmean")
    p, q = np.exp(edited.numpy()), np.exp(clean.numpy())
    by_hand = np.mean([sum(p[r, i] * np.log(p[r, i] / q[r, i]) for i in range(11)) for r in range(3)])
    assert float(kl_term(clean, edited, "edited-clean")) == pytest.approx(by_hand, rel=1e-12)
    assert float(rome) == pytest.approx(by_hand, rel=1e-12)
    reverse = np.mean([sum(q[r, i] * np.log(q[r, i] / p[r, i]) for i in range(11)) for r in range(3)])
    assert float(kl_term(clean, edited, "clean-edited")) == pytest.approx(reverse, rel=1e-12)
    assert abs(by_hand - reverse) > 1e-3  # the two directions differ here, so the test can tell them apart
