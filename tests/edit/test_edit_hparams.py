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
