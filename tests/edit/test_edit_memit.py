"""MEMIT on tiny random-weight models: the update against a hand-written float64 reference, its closed-form
relation to ROME for one fact on one layer, exact undo, saved deltas, bad requests and its hparams."""

from __future__ import annotations

import json

import pytest
import torch

from neuronmap.edit import Edit, MemitEdit, Request, load_edit, memit, rome
from neuronmap.edit.hparams import MemitHparams, hparams_names, load_memit_hparams
from neuronmap.edit.prompts import encode_fact, opening_ids
from neuronmap.edit.stats import second_moments
from neuronmap.errors import NeuronmapError

REQUESTS = [
    Request("The {} is located in the city of", "Eiffel Tower", "Rome", "Paris"),
    Request("{} is the capital of", "Tokyo", "France", "Japan"),
    Request("The river {} flows through", "Amazon", "Europe", "Brazil"),
]
N_LAYERS = 4  # deep enough for a range of layers that ends before the last one


def _weights(lm) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in lm.model.state_dict().items()}


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def deep(tmp_path_factory):
    """A 4-layer float64 tiny model (``gpt2``: Conv1D weights, ``llama``: Linear), saved once a session and loaded
    fresh per call: tests change its weights."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    from neuronmap.models import tiny
    from neuronmap.models.loader import load_model

    def make(kind: str):
        folder = tmp_path_factory.getbasetemp() / f"memit-{kind}-{N_LAYERS}"
        if not (folder / "config.json").is_file():
            sizes = {"vocab_size": tiny.GPT2_VOCAB, "initializer_range": tiny.INIT_STD}
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(tiny.SEED)
                if kind == "gpt2":
                    model = GPT2LMHeadModel(GPT2Config(n_positions=256, n_embd=tiny.D_MODEL, n_layer=N_LAYERS,
                                                       n_head=tiny.N_HEADS, n_inner=tiny.D_MLP, **sizes))  # fmt: skip
                else:
                    config = LlamaConfig(hidden_size=tiny.D_MODEL, intermediate_size=tiny.D_MLP,
                                         num_hidden_layers=N_LAYERS, num_attention_heads=tiny.N_HEADS,
                                         num_key_value_heads=2, max_position_embeddings=256,
                                         tie_word_embeddings=False, **sizes)  # fmt: skip
                    model = LlamaForCausalLM(config)
            model.save_pretrained(folder)
            tiny.gpt2_tokenizer().save_pretrained(folder)
        return load_model(str(folder), dtype="float64")

    return make


# -- a hand-written reference, one prompt per forward pass (no batching, no padding, no neuronmap hooks) -------
def _run(lm, prompt: str, subject: str, prefix: str, opening: list[int], module, read):
    """``read(args, output)`` of ``module`` at the subject's last token of ``prefix + prompt``."""
    enc = encode_fact(lm.tokenizer, prompt, subject, None, prefix, opening)
    seen = {}

    def hook(mod, args, output):
        seen["value"] = read(args, output)[0, enc.subject_last]

    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad():
            lm.model(input_ids=torch.tensor([enc.input_ids]))
    finally:
        handle.remove()
    return seen["value"].to(torch.float64)


def _key(lm, layer: int, req: Request, prefixes: list[str], opening: list[int]) -> torch.Tensor:
    """MEMIT's key: the bare prompt's key and the generated prefixes' mean key, averaged (two kinds of context)."""
    proj = lm.adapter.modules[layer]
    keys = [_run(lm, req.prompt, req.subject, p, opening, proj, lambda a, o: a[0]) for p in prefixes]
    return 0.5 * keys[0] + 0.5 * torch.stack(keys[1:]).mean(0)


def _state(lm, layer: int, req: Request, opening: list[int]) -> torch.Tensor:
    """The residual stream after block ``layer`` at the subject's last token of the bare prompt."""
    block = lm.model.get_submodule(lm.adapter.names[layer].rsplit(".mlp.", 1)[0])
    return _run(
        lm, req.prompt, req.subject, "", opening, block, lambda a, o: o[0] if isinstance(o, tuple) else o
    )


def _reference(lm, requests, zs, layers, prefixes, mom2, weight, opening) -> list[torch.Tensor]:
    """The (d_model, d_mlp) MEMIT update of each layer: R K^T (lambda C + K K^T)^-1 with R = (Z - H) / (layers
    left), each computed after the earlier layers' updates were added to the weights (undone at the end)."""
    saved = {layer: lm.adapter.modules[layer].weight.detach().clone() for layer in layers}
    updates = []
    try:
        for i, layer in enumerate(layers):
            k = torch.stack([_key(lm, layer, r, prefixes, opening) for r in requests], dim=1)  # (d_mlp, N)
            h = torch.stack([_state(lm, layers[-1], r, opening) for r in requests], dim=1)  # (d_model, N)
            r = (zs.T - h) / (len(layers) - i)
            update = r @ k.T @ torch.linalg.inv(weight * mom2[layer] + k @ k.T)
            weight_now = lm.adapter.modules[
                layer
            ].weight  # Linear: (d_model, d_mlp); Conv1D: (d_mlp, d_model)
            with torch.no_grad():
                weight_now.add_(update if weight_now.shape == update.shape else update.T)
            updates.append(update)
    finally:
        with torch.no_grad():
            for layer, w in saved.items():
                lm.adapter.modules[layer].weight.copy_(w)
    return updates


@pytest.mark.parametrize(("kind", "opened"), [("gpt2", False), ("llama", True)])
def test_update_equals_a_float64_reference(deep, memit_hparams, kind, opened):
    lm = deep(kind)
    hp = memit_hparams.replace(document_start=opened)
    opening = opening_ids(lm.tokenizer, opened)
    before = _weights(lm)
    edit = memit(lm, REQUESTS, hp)
    assert _same(before, _weights(lm))  # computing the edit changes nothing
    assert edit.layers == [0, 1, 2] and edit.zs.shape == (3, lm.model.config.hidden_size)
    prefixes = edit_prefixes(lm, hp)
    stats = second_moments(lm, [0, 1, 2], corpus=hp.mom2_corpus, n_tokens=hp.mom2_n_tokens,
                           max_length=hp.mom2_max_length)  # fmt: skip
    mom2 = {layer: s.mom2 for layer, s in stats.items()}
    # z is the clean residual stream plus the optimised delta, at the bare prompt's subject
    h0 = torch.stack([_state(lm, 2, r, opening) for r in REQUESTS])
    torch.testing.assert_close(
        (edit.zs - h0).norm(dim=1), torch.tensor(edit.info["delta_norm"], dtype=torch.float64)
    )
    expected = _reference(lm, REQUESTS, edit.zs, [0, 1, 2], prefixes, mom2, hp.mom2_update_weight, opening)
    for e, update in zip(edit.edits, expected, strict=True):
        assert e.left.shape == (lm.d_mlp, 3) and e.right.shape == (lm.model.config.hidden_size, 3)
        torch.testing.assert_close((e.left @ e.right.T).T, update, rtol=1e-7, atol=1e-10)
    assert all(float(u.norm()) > 1e-3 for u in expected)  # the reference is not trivially zero
    assert edit.info["z_gap"][0] == pytest.approx(float((edit.zs - h0).norm(dim=1).mean()), rel=1e-9)


def edit_prefixes(lm, hp) -> list[str]:
    from neuronmap.edit.algorithm.context import context_prefixes

    prefixes = context_prefixes(lm, hp)
    assert prefixes[0] == "" and len(prefixes) == 3
    return prefixes


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_one_fact_on_one_layer_is_rome_scaled(fresh, small_hparams, name):
    """One fact, one layer, the mean key on both sides and no weight decay or clamp (ROME's are relative to the
    MLP output, MEMIT's to the residual stream): adding delta to the MLP output or to the block's output at the
    same position is the same optimisation, so z - h = ROME's delta; and by Sherman-Morrison
    k^T (lambda C + k k^T)^-1 = (C^-1 k)^T / (lambda + q), q = k^T C^-1 k, against ROME's (C^-1 k)^T / q:
    MEMIT's update is ROME's times q / (lambda + q)."""
    from neuronmap.edit.algorithm.context import context_prefixes

    lm = fresh(name)
    rome_hp = small_hparams.replace(layer=0, key_constraint="mean", mom2_ridge=0.0, v_weight_decay=0.0,
                                    clamp_norm_factor=1e6, context_template_length_params=((3, 1),))  # fmt: skip
    weight = 30.0
    memit_hp = MemitHparams(layers=(0,), v_num_grad_steps=rome_hp.v_num_grad_steps, v_weight_decay=0.0,
                            clamp_norm_factor=1e6, context_template_length_params=((3, 1),),
                            mom2_corpus=rome_hp.mom2_corpus, mom2_n_tokens=rome_hp.mom2_n_tokens,
                            mom2_max_length=rome_hp.mom2_max_length, mom2_update_weight=weight)  # fmt: skip
    prefixes = context_prefixes(lm, rome_hp)  # "" and one prefix: MEMIT's mean of kinds = ROME's mean
    request = REQUESTS[0]
    by_rome = rome(lm, request, rome_hp, prefixes=prefixes)
    by_memit = memit(lm, [request], memit_hp, prefixes=prefixes)
    torch.testing.assert_close(by_memit.edits[0].right[:, 0], by_rome.right, rtol=1e-6, atol=1e-9)
    stats = second_moments(lm, [0], corpus=rome_hp.mom2_corpus, n_tokens=rome_hp.mom2_n_tokens,
                           max_length=rome_hp.mom2_max_length)[0]  # fmt: skip
    k = by_rome.k_star
    q = float(k @ torch.linalg.solve(stats.mom2, k))
    assert 0.1 < q / (weight + q) < 0.9  # the factor is visible: not ROME's update itself, nor nothing
    rome_update = torch.outer(by_rome.left, by_rome.right)
    memit_update = by_memit.edits[0].left @ by_memit.edits[0].right.T
    torch.testing.assert_close(memit_update, q / (weight + q) * rome_update, rtol=1e-6, atol=1e-12)


def test_apply_and_undo_are_exact_and_refused_under_a_later_edit(deep, memit_hparams):
    lm = deep("llama")
    original = _weights(lm)
    edit = memit(lm, REQUESTS[:2], memit_hparams).apply()
    changed = {k for k, v in lm.model.state_dict().items() if not torch.equal(v, original[k])}
    assert changed == {f"{lm.adapter.names[layer]}.weight" for layer in (0, 1, 2)}
    with pytest.raises(NeuronmapError, match="already applied"):
        edit.apply()
    later = rome(lm, REQUESTS[2], memit_hparams_as_rome(memit_hparams), layer=1).apply()
    edited = _weights(lm)
    with pytest.raises(NeuronmapError, match="layer 1 changed since"):
        edit.undo()
    assert _same(edited, _weights(lm)) and edit.applied  # a refused undo undoes no layer
    later.undo()
    edit.undo()
    assert _same(original, _weights(lm))
    with edit:
        assert not _same(original, _weights(lm))
    assert _same(original, _weights(lm))


def memit_hparams_as_rome(hp: MemitHparams):
    from neuronmap.edit.hparams import RomeHparams

    return RomeHparams(layer=0, v_num_grad_steps=2, context_template_length_params=((3, 2),),
                       mom2_corpus=hp.mom2_corpus, mom2_n_tokens=hp.mom2_n_tokens,
                       mom2_max_length=hp.mom2_max_length, mom2_ridge=1e-3)  # fmt: skip


def test_saved_delta_round_trips(deep, memit_hparams, tmp_path, fresh):
    lm = deep("gpt2")
    original = _weights(lm)
    edit = memit(lm, REQUESTS, memit_hparams)
    path = edit.save(tmp_path / "memit.safetensors")
    again = memit(lm, REQUESTS, memit_hparams).save(tmp_path / "again.safetensors")
    assert path.read_bytes() == again.read_bytes()  # no wall-clock field in the file
    with edit:
        edited = _weights(lm)
    loaded = load_edit(path, lm)
    assert isinstance(loaded, MemitEdit) and loaded.layers == edit.layers
    assert loaded.requests == REQUESTS and loaded.hparams == memit_hparams
    torch.testing.assert_close(loaded.zs, edit.zs, rtol=0, atol=0)
    loaded.apply()
    assert _same(edited, _weights(lm))
    loaded.undo()
    assert _same(original, _weights(lm))
    with pytest.raises(NeuronmapError, match="made for another model"):
        load_edit(path, fresh("tiny-gpt2"))
    rome_file = rome(lm, REQUESTS[0], memit_hparams_as_rome(memit_hparams)).save(
        tmp_path / "rome.safetensors"
    )
    assert isinstance(load_edit(rome_file, lm), Edit)


def test_saved_model_folder_lists_the_memit_edit(deep, memit_hparams, tmp_path):
    from neuronmap.edit import save_model

    lm = deep("llama")
    edit = memit(lm, REQUESTS[:1], memit_hparams).apply()
    folder = save_model(lm, tmp_path / "edited", [edit])
    listed = json.loads((folder / "neuronmap_edits.json").read_text())["edits"]
    assert [e["layers"] for e in listed] == [[0, 1, 2]] and listed[0]["format"] == "neuronmap-memit-delta/1"


@pytest.mark.parametrize(
    ("requests", "layers", "message"),
    [
        ([], None, "at least one request"),
        ([Request("The Eiffel Tower is in", "Eiffel Tower", "Rome")], None, "has no '{}'"),
        ([REQUESTS[0], Request("{} is in", "Tokyo", " ")], None, "new target is empty"),
        (REQUESTS[:1], (1, 0), "must increase"),
        (REQUESTS[:1], (0, 7), "layer 7 out of range"),
    ],
)
def test_bad_requests_are_clear_and_change_nothing(deep, memit_hparams, requests, layers, message):
    lm = deep("gpt2")
    before = _weights(lm)
    with pytest.raises(NeuronmapError, match=message):
        memit(lm, requests, memit_hparams, layers=layers)
    assert _same(before, _weights(lm))


def test_without_statistics_c_is_the_identity(deep, memit_hparams):
    from neuronmap.edit.algorithm.keys import prefix_keys
    from neuronmap.edit.algorithm.memit import context_groups, mean_key

    lm = deep("gpt2")
    hp = memit_hparams.replace(layers=(1,), mom2_adjustment=False)
    edit = memit(lm, REQUESTS[:2], hp)
    prefixes = edit_prefixes(lm, hp)
    groups = context_groups(len(prefixes), hp)
    k = torch.stack([mean_key(prefix_keys(lm, 1, r, prefixes), groups) for r in REQUESTS[:2]], dim=1)
    eye = torch.eye(lm.d_mlp, dtype=torch.float64)
    torch.testing.assert_close((hp.mom2_update_weight * eye + k @ k.T) @ edit.edits[0].left, k)
    assert edit.info["stats_tokens"] == {}


# -- hparams ---------------------------------------------------------------------------------------------------
def test_memit_hparams_files():
    assert {"default", "gpt2-xl", "smollm2-135m"} <= set(hparams_names("memit"))
    paper = load_memit_hparams(model="openai-community/gpt2-xl")
    assert paper.layers == (13, 14, 15, 16, 17) and paper.mom2_update_weight == 20000
    assert paper.clamp_norm_factor == 0.75 and paper.context_template_length_params == ((10, 5),)
    assert load_memit_hparams(model="gpt2-xl").resolve_layers(48) == load_memit_hparams().resolve_layers(48)
    assert load_memit_hparams(model="smollm2-135m").document_start
    hp = load_memit_hparams("smollm2-135m")
    assert MemitHparams.from_dict(json.loads(json.dumps(hp.to_dict()))) == hp


@pytest.mark.parametrize("n_layers", range(1, 61))
def test_the_default_range_never_reaches_the_last_layer(n_layers):
    layers = load_memit_hparams(model="tiny-llama").resolve_layers(n_layers)
    assert layers == sorted(set(layers)) and layers and layers[0] >= 0
    assert layers[-1] < max(n_layers - 1, 1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"layers": [1], "layer": 3}, "unknown MEMIT hparams"),
        ({"layers": None}, "'layers' or 'relative_layers'"),
        ({"layers": []}, "non-empty list"),
        ({"relative_layers": [0.5, 0.2]}, "first <= last"),
        ({"layers": [1], "mom2_update_weight": 0}, "must be positive"),
        ({"layers": [1], "v_num_grad_steps": 0}, "at least 1"),
        ({"layers": [1], "kl_direction": "both"}, "kl_direction"),
    ],
)
def test_bad_memit_hparams(tmp_path, data, message):
    from neuronmap.edit.hparams import load_edit_hparams

    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(NeuronmapError, match=message):
        load_edit_hparams("memit", path)


def test_unknown_names():
    from neuronmap.edit.hparams import load_edit_hparams

    with pytest.raises(NeuronmapError, match="no MEMIT hparams named 'gpt5'"):
        load_memit_hparams("gpt5")
    with pytest.raises(NeuronmapError, match="unknown edit algorithm 'pmet'"):
        load_edit_hparams("pmet")
    with pytest.raises(NeuronmapError, match="must increase"):
        MemitHparams(layers=(3, 3)).resolve_layers(10)


def test_every_hparams_file_ships_with_the_package():
    """A wheel holds only what ``[tool.setuptools.package-data]`` names: each hparams file, MEMIT's folder too."""
    import fnmatch
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    table = (root / "pyproject.toml").read_text().split("[tool.setuptools.package-data]", 1)[1]
    globs = re.findall(r'"([^"]+)"', re.search(r"^neuronmap\s*=\s*\[(.*?)\]", table, re.M | re.S).group(1))
    package = root / "src" / "neuronmap"
    files = [p.relative_to(package).as_posix() for p in (package / "edit" / "hparams").rglob("*.json")]
    assert any(f.startswith("edit/hparams/memit/") for f in files)
    missing = [
        f for f in files if not any(fnmatch.fnmatchcase(f, g) and f.count("/") == g.count("/") for g in globs)
    ]
    assert not missing, f"add a glob to pyproject.toml's package-data for {missing}"


def _counting(module, monkeypatch) -> list[str]:
    """The subjects whose target MEMIT searches (``compute_value`` calls), in order."""
    real, searched = module.compute_value, []

    def search(lm, layer, req, *args, **kwargs):
        searched.append(req.subject)
        return real(lm, layer, req, *args, **kwargs)

    monkeypatch.setattr(module, "compute_value", search)
    return searched


def test_kept_target_searches_resume_a_stopped_mass_edit(deep, memit_hparams, tmp_path, monkeypatch):
    """With ``keep``, each request's target search is kept as it is done: stopped at the third search and run
    again, MEMIT searches only that one and gives, bit for bit, the edit computed without keeping anything."""
    from neuronmap.edit.algorithm import memit as module

    lm = deep("gpt2")
    whole = memit(lm, REQUESTS, memit_hparams)
    searched = _counting(module, monkeypatch)
    counted = module.compute_value

    def stopping(lm, layer, req, *args, **kwargs):
        if len(searched) == 2:
            raise KeyboardInterrupt
        return counted(lm, layer, req, *args, **kwargs)

    monkeypatch.setattr(module, "compute_value", stopping)
    with pytest.raises(KeyboardInterrupt):
        memit(lm, REQUESTS, memit_hparams, keep=tmp_path / "z")
    assert len(list((tmp_path / "z").glob("z-*.safetensors"))) == 2
    monkeypatch.setattr(module, "compute_value", counted)
    searched.clear()
    resumed = memit(lm, REQUESTS, memit_hparams, keep=tmp_path / "z")
    assert searched == ["Amazon"]
    assert torch.equal(resumed.zs, whole.zs)
    for a, b in zip(resumed.edits, whole.edits, strict=True):
        assert torch.equal(a.left, b.left) and torch.equal(a.right, b.right)
    assert {k: v for k, v in resumed.info.items() if k not in ("seconds", "z_cached")} == {
        k: v for k, v in whole.info.items() if k not in ("seconds", "z_cached")}  # fmt: skip
    assert resumed.info["z_cached"] == [True, True, False] and whole.info["z_cached"] == [False] * 3
    # a kept search is its request's wherever it stands in the batch
    searched.clear()
    memit(lm, [REQUESTS[1], REQUESTS[0]], memit_hparams, keep=tmp_path / "z")
    assert searched == []


def test_kept_searches_serve_a_lambda_or_range_sweep_and_nothing_else(
    deep, memit_hparams, tmp_path, monkeypatch
):
    """A kept target serves an edit that differs only in what z does not read (lambda, the statistics, the range
    below the last layer), giving the update computed from scratch; any setting the search reads, another last
    layer, other prefixes or an edited model search again."""
    from neuronmap.edit.algorithm import memit as module

    lm = deep("gpt2")
    keep = tmp_path / "z"
    first = memit(lm, REQUESTS[:2], memit_hparams, keep=keep)
    searched = _counting(module, monkeypatch)
    last = memit_hparams.layers[-1]
    for same in (
        memit_hparams.replace(mom2_update_weight=memit_hparams.mom2_update_weight * 10),
        memit_hparams.replace(layers=(last,)),
    ):
        reused = memit(lm, REQUESTS[:2], same, keep=keep)
        assert searched == [] and reused.info["z_cached"] == [True, True]
        assert torch.equal(reused.zs, first.zs)
        fresh = memit(lm, REQUESTS[:2], same)
        for a, b in zip(reused.edits, fresh.edits, strict=True):
            assert torch.allclose(a.left @ a.right.T, b.left @ b.right.T, rtol=0, atol=1e-12)
        searched.clear()
    for other in (memit_hparams.replace(v_lr=memit_hparams.v_lr / 2), memit_hparams.replace(layers=(0,))):
        memit(lm, REQUESTS[:2], other, keep=keep)
        assert searched == ["Eiffel Tower", "Tokyo"]
        searched.clear()
    memit(lm, REQUESTS[:2], memit_hparams, keep=keep, prefixes=["Once upon a time. "])
    assert searched == ["Eiffel Tower", "Tokyo"]
    searched.clear()
    with first:
        memit(lm, REQUESTS[:2], memit_hparams, keep=keep)
    assert searched == ["Eiffel Tower", "Tokyo"]


def test_the_weights_digest_reads_any_dtype(tiny_models):
    """``weights_now`` hashes the bytes of the weights as stored: bfloat16 (no numpy dtype) included, and the
    same weights in another dtype are another model."""
    from neuronmap.edit.algorithm.memit import weights_now

    digests = {dtype: weights_now(tiny_models("tiny-llama", dtype)) for dtype in ("float32", "bfloat16")}
    assert digests["float32"] != digests["bfloat16"]
    assert weights_now(tiny_models("tiny-llama", "bfloat16")) == digests["bfloat16"]
