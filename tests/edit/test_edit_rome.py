"""ROME on tiny models: the closed form, exact undo, sequences of edits, files, and bad requests."""

from __future__ import annotations

import pytest
import torch

from neuronmap.edit import Edit, Request, rome
from neuronmap.edit.algorithm.context import context_prefixes
from neuronmap.edit.algorithm.keys import compute_key, prefix_keys
from neuronmap.edit.stats import second_moment
from neuronmap.errors import NeuronmapError

REQ = Request("The {} is located in the city of", "Eiffel Tower", "Rome", "Paris")


def _weights(lm) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in lm.model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])  # Conv1D (in, out) and Linear (out, in) weights
@pytest.mark.parametrize(("constraint", "opened"), [("prompt", False), ("mean", False), ("prompt", True)])
def test_update_maps_key_to_value_and_undo_is_exact(fresh, small_hparams, name, constraint, opened):
    from neuronmap.edit.prompts import opening_ids

    lm = fresh(name)
    hp = small_hparams.replace(key_constraint=constraint, document_start=opened)
    opening = opening_ids(lm.tokenizer, opened)
    before = _weights(lm)
    edit = rome(lm, REQ, hp)
    assert _same(before, _weights(lm))  # computing an edit changes nothing
    module = lm.adapter.modules[edit.layer]
    k_star = edit.k_star.to(lm.dtype)
    with torch.no_grad():
        out_before = module(k_star[None])[0]
        edit.apply()
        out_after = module(k_star[None])[0]
    # Closed form: W' k* (+ b) = v* = W k* (+ b) + delta.
    torch.testing.assert_close(out_after.double(), edit.v_star, rtol=0, atol=1e-10)
    torch.testing.assert_close((out_after - out_before).double(), edit.right, rtol=0, atol=1e-10)
    # Independent reference of the direction: C^-1 k_mean, from the statistics, scaled so that left . k* = 1.
    prefixes = context_prefixes(lm, hp)
    k_mean = compute_key(lm, edit.layer, REQ, prefixes, opening)
    stats = second_moment(
        lm, edit.layer, corpus=hp.mom2_corpus, n_tokens=hp.mom2_n_tokens, max_length=hp.mom2_max_length
    )
    c = stats.mom2 + hp.mom2_ridge * stats.mom2.diagonal().mean() * torch.eye(lm.d_mlp, dtype=torch.float64)
    u = torch.linalg.inv(c) @ k_mean
    torch.testing.assert_close(edit.left, u / (u @ edit.k_star), rtol=1e-6, atol=1e-9)
    expected_key = k_mean if constraint == "mean" else prefix_keys(lm, edit.layer, REQ, [""], opening)[0]
    torch.testing.assert_close(edit.k_star, expected_key)
    # Only the edited matrix changed, and undo restores it bit for bit.
    changed = [k for k, v in lm.model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) == 1 and changed[0].startswith(lm.adapter.names[edit.layer])
    edit.undo()
    assert _same(before, _weights(lm))


def test_edit_raises_new_target_probability(fresh, small_hparams):
    from neuronmap.edit.scoring import mean_logprobs

    lm = fresh("tiny-llama")
    # Layer 0: in a 2-layer model, the last layer's subject position cannot reach the prediction.
    hp = small_hparams.replace(layer=0, v_num_grad_steps=15, clamp_norm_factor=50.0, v_weight_decay=0.0)
    p0 = float(mean_logprobs(lm, [REQ.text], [REQ.target_new]).exp())
    edit = rome(lm, REQ, hp)
    with edit:
        p1 = float(mean_logprobs(lm, [REQ.text], [REQ.target_new]).exp())
    assert edit.info["losses"][-1]["nll"] < edit.info["losses"][0]["nll"]
    # a random 2-layer model: the edit reaches the prediction through one attention layer only, so the gain is
    # modest
    assert p1 > 1.3 * p0


def test_without_statistics_the_direction_is_the_key(fresh, small_hparams):
    lm = fresh("tiny-llama")
    edit = rome(lm, REQ, small_hparams.replace(mom2_adjustment=False, key_constraint="mean"))
    torch.testing.assert_close(edit.left, edit.k_star / (edit.k_star @ edit.k_star))
    assert edit.info["stats_tokens"] is None


def test_sequential_edits_undo_in_reverse_order(fresh, small_hparams):
    lm = fresh("tiny-gpt2")
    original = _weights(lm)
    first = rome(lm, REQ, small_hparams).apply()
    after_first = _weights(lm)
    second = rome(lm, Request("{} is the capital of", "Tokyo", "France"), small_hparams).apply()
    with pytest.raises(NeuronmapError, match="undo the later edits first"):
        first.undo()
    assert first.applied  # the refused undo changed nothing
    second.undo()
    assert _same(after_first, _weights(lm))
    first.undo()
    assert _same(original, _weights(lm))
    with pytest.raises(NeuronmapError, match="not applied"):
        first.undo()


def test_edits_on_different_layers_undo_in_any_order(fresh, small_hparams):
    lm = fresh("tiny-llama")
    original = _weights(lm)
    a = rome(lm, REQ, small_hparams, layer=0).apply()
    b = rome(lm, REQ, small_hparams, layer=1).apply()
    a.undo()
    b.undo()
    assert _same(original, _weights(lm))


def test_saved_delta_is_deterministic_and_reapplies_identically(fresh, small_hparams, tmp_path):
    lm = fresh("tiny-gpt2")
    original = _weights(lm)
    edit = rome(lm, REQ, small_hparams)
    path = edit.save(tmp_path / "edit.safetensors")
    again = rome(lm, REQ, small_hparams).save(tmp_path / "again.safetensors")
    assert path.read_bytes() == again.read_bytes()  # no wall-clock field in the file
    edit.apply()
    edited = _weights(lm)
    edit.undo()
    loaded = Edit.load(path, lm)
    assert loaded.request == REQ and loaded.layer == edit.layer and loaded.hparams == small_hparams
    loaded.apply()
    assert _same(edited, _weights(lm))
    loaded.undo()
    assert _same(original, _weights(lm))
    other = fresh("tiny-llama")
    with pytest.raises(NeuronmapError, match="made for another model"):
        Edit.load(path, other)


def test_save_edited_model_folder(fresh, small_hparams, tmp_path):
    from neuronmap.edit import save_model
    from neuronmap.models.loader import load_model

    lm = fresh("tiny-llama")
    edit = rome(lm, REQ, small_hparams).apply()
    folder = save_model(lm, tmp_path / "edited", [edit])
    again = load_model(str(folder), dtype="float64")
    name = lm.adapter.names[edit.layer] + ".weight"
    assert torch.equal(again.model.state_dict()[name], lm.model.state_dict()[name])
    assert (folder / "neuronmap_edits.json").is_file()
    with pytest.raises(NeuronmapError, match="not empty"):
        save_model(lm, folder, [edit])


@pytest.mark.parametrize(
    ("request_args", "layer", "message"),
    [
        (("The Eiffel Tower is in", "Louvre", "Rome"), None, "is not in the prompt"),
        (("The Eiffel Tower is in", "Eiffel Tower", "Rome"), None, "has no '{}'"),
        (("{} and {} are in", "Eiffel Tower", "Rome"), None, "exactly one"),
        (("{} is in", "Eiffel Tower", "  "), None, "new target is empty"),
        (("{} is in", "", "Rome"), None, "subject is empty"),
        (("{} is in", "Eiffel Tower", "Paris", "Paris"), None, "is the true target"),
        (("{} is in", "Eiffel Tower", "Rome"), 2, "layer 2 out of range"),
        (("{} is in", "Eiffel Tower", "Rome"), -5, "out of range"),
    ],
)
def test_bad_requests_are_clear_and_change_nothing(fresh, small_hparams, request_args, layer, message):
    lm = fresh("tiny-gpt2")
    before = _weights(lm)
    with pytest.raises(NeuronmapError, match=message):
        rome(lm, Request(*request_args), small_hparams, layer=layer)
    assert _same(before, _weights(lm))


def test_apply_twice_is_refused(fresh, small_hparams):
    lm = fresh("tiny-llama")
    edit = rome(lm, REQ, small_hparams.replace(mom2_adjustment=False)).apply()
    with pytest.raises(NeuronmapError, match="already applied"):
        edit.apply()
    edit.undo()


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-neox"])
def test_value_search_replay_equals_a_full_forward(fresh, name):
    """v* skips the blocks before the edited layer by replaying a clean pass: same logits as running them."""
    from neuronmap.edit.algorithm.values import _logits, _rows
    from neuronmap.models.output_hooks import OutputHooks, block_name, replay_blocks

    lm = fresh(name)
    rows = _rows(lm, REQ, ["", "Some text. "], ("{} is a",))
    proj, before = lm.adapter.names[1], block_name(lm.adapter, 0)
    delta = torch.randn(
        lm.model.config.hidden_size, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
    )

    def add(out):
        return out + delta

    with torch.no_grad(), OutputHooks(lm.model, record=[before]) as clean:
        _logits(lm, rows)
    with torch.no_grad(), OutputHooks(lm.model, edits={proj: add}):
        full = _logits(lm, rows)
        with replay_blocks(lm.adapter, 0, clean.outputs[before]):
            replayed = _logits(lm, rows)
    torch.testing.assert_close(replayed, full, rtol=0, atol=1e-12)
    assert lm.model.get_submodule(before).__class__.__name__ != "_Replay"  # put back on exit


def test_the_default_placement_edits_a_two_layer_model(fresh, small_hparams):
    """default.json places an edit by relative layer, never on the last: on a 2-layer model, layer 0, where the
    edit reaches the prediction."""
    from neuronmap.edit.hparams import load_hparams
    from neuronmap.edit.scoring import mean_logprobs

    lm = fresh("tiny-llama")
    relative = load_hparams(model="tiny-llama").relative_layer
    hp = small_hparams.replace(layer=None, relative_layer=relative, v_num_grad_steps=15, clamp_norm_factor=50.0,
                               v_weight_decay=0.0)  # fmt: skip
    p0 = float(mean_logprobs(lm, [REQ.text], [REQ.target_new]).exp())
    edit = rome(lm, REQ, hp)
    with edit:
        p1 = float(mean_logprobs(lm, [REQ.text], [REQ.target_new]).exp())
    assert edit.layer == 0 and p1 > 1.3 * p0  # modest on a random model, see above
