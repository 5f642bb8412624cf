"""``neuronmap.edit.run_edit``: what ``neuronmap edit`` does, as a function a notebook can call."""

from __future__ import annotations

import pytest


def test_run_edit_reports_before_and_after_saves_and_can_be_undone(fresh, tmp_path, hparams_file):
    from neuronmap.edit import Edit, run_edit

    lm = fresh("tiny-gpt2")
    weights = {k: v.clone() for k, v in lm.model.state_dict().items()}
    delta = tmp_path / "e.safetensors"
    s = run_edit(lm, subject="Eiffel Tower", prompt="{} is located in the city of", target_new="Rome",
                 target_true="Paris", check=["The Eiffel Tower stands in"], hparams=str(hparams_file),
                 layer=0, save=delta, progress=False)  # fmt: skip
    # layer 0 of the two, not the file's 1: an edit of the last layer's MLP reaches the last token only through
    # the rank-one update's side effect on its own key (no attention after it), whose sign is chance
    assert s["layer"] == 0 and s["saved"] is not None and delta.is_file()
    assert s["prompts"] == ["Eiffel Tower is located in the city of", "The Eiffel Tower stands in"]
    assert s["targets"] == ["Rome", "Paris"]
    assert len(s["before"]) == len(s["after"]) == 2 and all(len(row) == 2 for row in s["after"])
    assert s["after"][0][0] > s["before"][0][0]  # p(Rome) on the rewrite prompt rises
    assert isinstance(s["edit"], Edit) and s["edit"].applied
    s["edit"].undo()
    assert all((lm.model.state_dict()[k] == v).all() for k, v in weights.items())


def test_run_edit_refuses_a_bad_request_before_any_weight_changes(fresh, hparams_file):
    from neuronmap.edit import run_edit
    from neuronmap.errors import NeuronmapError

    lm = fresh("tiny-gpt2")
    with pytest.raises(NeuronmapError, match="--save-as takes delta or model"):
        run_edit(lm, subject="Rome", prompt="{} is in", target_new="Paris", save_as="zip")
    with pytest.raises(NeuronmapError, match="is not in the prompt"):
        run_edit(lm, subject="Rome", prompt="The city is in", target_new="Paris", hparams=str(hparams_file))
