"""Neuron dashboards (``neuronmap neurons``): output-token weights against a float64 reference read from the
model's parameters by name, top-activating examples and activation histograms against brute force over every
position, memory bounded by the batch, and the stage's bookkeeping."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neuronmap.errors import NeuronmapError
from neuronmap.graph.api import map_run
from neuronmap.models.hooks import NeuronHook
from neuronmap.models.loader import load_model
from neuronmap.neurons import ActivationHistogram, TopActivations, neurons_run, output_token_weights
from neuronmap.rundir import RunDir, read_parquet
from neuronmap.trace.runner import trace_run

DOCS = [
    "The Falklands are islands in the South Atlantic, far from the coast of Argentina.",
    "Hydrogen and oxygen make water, said the chemist to the class.",
    "The river runs north past the old mill and into the lake by the town.",
    "Prime numbers have no divisors but one and themselves, as Euclid proved long ago.",
    "The orchestra played the symphony twice.",
]
CONTEXTS = [
    ("The Eiffel Tower is located in the city of", "Paris"),
    ("The capital of Japan is", "Tokyo"),
    ("Water is made of hydrogen and", "oxygen"),
    ("The largest planet of the solar system is", "Jupiter"),
    ("Shakespeare wrote the play", "Hamlet"),
    ("The currency of the United Kingdom is the", "pound sterling"),
    ("A week has seven", "days"),
    ("The opposite of hot is", "cold"),
]


# ---- output-token weights ----------------------------------------------------------------------------------
def _reference(model: torch.nn.Module, name: str, layer: int, neuron: int) -> np.ndarray:
    """W_U (g * C W_out[:, i]) in float64, from the parameters by name (C: centring for LayerNorm models)."""
    if name == "tiny-gpt2":  # Conv1D: weight is (d_mlp, d_model)
        w = model.transformer.h[layer].mlp.c_proj.weight[neuron, :]
        g, centre, unembed = model.transformer.ln_f.weight, True, model.lm_head.weight
    elif name == "tiny-neox":
        w = model.gpt_neox.layers[layer].mlp.dense_4h_to_h.weight[:, neuron]
        g, centre, unembed = model.gpt_neox.final_layer_norm.weight, True, model.lm_head.weight
    else:
        w = model.model.layers[layer].mlp.down_proj.weight[:, neuron]
        g = model.model.norm.weight
        g = 1 + g if name == "tiny-gemma" else g  # Gemma's RMS norm scales by 1 + weight
        centre, unembed = False, model.lm_head.weight
    v = w.detach().double()
    if centre:
        v = v - v.mean()
    return (unembed.detach().double() @ (g.detach().double() * v)).numpy()


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-neox", "tiny-gemma"])
def test_output_token_weights_match_a_float64_reference(name: str) -> None:
    lm = load_model(name, dtype="float64")
    gen = torch.Generator().manual_seed(1)
    norm = dict(lm.model.named_modules())[
        {"tiny-gpt2": "transformer.ln_f", "tiny-neox": "gpt_neox.final_layer_norm"}.get(name, "model.norm")
    ]
    with torch.no_grad():  # a gain far from 1 (and from Gemma's 0), so that reading it wrongly shows
        norm.weight.copy_(torch.randn(norm.weight.shape, generator=gen, dtype=torch.float64))
    layers = np.array([0, 0, 1, 1, 1])
    neurons = np.array([0, 7, 3, 40, 63])
    k = 6
    table = output_token_weights(lm, layers, neurons, k=k)
    assert list(table.columns) == ["layer", "neuron", "token_id", "token", "weight", "rank", "sign"]
    assert len(table) == len(layers) * 2 * k
    for layer, neuron in zip(layers, neurons, strict=True):
        ref = _reference(lm.model, name, int(layer), int(neuron))
        mine = table[(table["layer"] == layer) & (table["neuron"] == neuron)]
        up, down = mine[mine["sign"] == 1], mine[mine["sign"] == -1]
        assert up["rank"].tolist() == down["rank"].tolist() == list(range(k))
        assert up["token_id"].tolist() == np.argsort(-ref, kind="stable")[:k].tolist()
        assert down["token_id"].tolist() == np.argsort(ref, kind="stable")[:k].tolist()
        np.testing.assert_allclose(up["weight"], ref[up["token_id"]], rtol=1e-6)
        np.testing.assert_allclose(down["weight"], ref[down["token_id"]], rtol=1e-6)
        assert up["token"].tolist() == [lm.tokenizer.decode([int(t)]) for t in up["token_id"]]


def test_output_token_weights_in_blocks_equal_one_block(monkeypatch) -> None:
    import neuronmap.neurons.logits as logits

    lm = load_model("tiny-llama")
    layers, neurons = np.repeat([0, 1], 64), np.tile(np.arange(64), 2)
    whole = output_token_weights(lm, layers, neurons, k=3)
    monkeypatch.setattr(logits, "BLOCK_BYTES", 4 * 50257 * 5)  # blocks of 5 neurons
    pd.testing.assert_frame_equal(output_token_weights(lm, layers, neurons, k=3), whole)


# ---- streaming top-k and histograms --------------------------------------------------------------------------
def test_top_activations_and_histograms_stream_exactly_in_bounded_memory() -> None:
    """Batches of random activations whose scale grows (so the histogram range doubles, several times in one
    batch too, starting from all zeros): the streamed top k and histograms equal those of all the data at once,
    and the state's size does not grow with the number of batches."""
    rng = np.random.default_rng(0)
    n, k, before, after, bins = 5, 4, 2, 1, 16
    top = TopActivations(n, k, before, after)
    hist = ActivationHistogram(n, bins)
    sizes = []
    every = []  # (batch, row, position, values over n)
    batches = []
    for b, scale in enumerate([0.0, 0.3, 1.0, 1.0, 50.0, 2.0, 7.0]):
        acts = torch.tensor(rng.normal(size=(3, 9, n)) * scale, dtype=torch.float32)
        cand = torch.tensor(rng.random((3, 9)) < 0.6)
        cand[0, 0] = True
        top.update(acts, cand, torch.arange(3) + 3 * b)
        hist.update(acts[cand])
        sizes.append((top.nbytes(), hist.counts.numel()))
        batches.append(acts.numpy())
        for r, p in zip(*np.nonzero(cand.numpy()), strict=True):
            every.append((3 * b + r, p, acts.numpy()[r, p]))
    assert len(set(sizes)) == 1  # bounded by the batch, not the stream
    values = np.stack([v for _, _, v in every]).astype(np.float64)  # (candidates, n)
    lo, hi = hist.edges()
    for j in range(n):
        order = np.argsort(-values[:, j], kind="stable")[:k]
        got = top.values[:, j].numpy()
        np.testing.assert_array_equal(got, values[order, j].astype(np.float32))
        for rank, idx in enumerate(order):
            text, pos, _ = every[idx]
            assert (int(top.text[rank, j]), int(top.position[rank, j])) == (text, pos)
            seq = batches[text // 3][text % 3, :, j]
            start = max(0, pos - before)
            window = seq[start : min(9, pos + after + 1)]
            assert int(top.start[rank, j]) == start
            np.testing.assert_array_equal(top.window[rank, j, : len(window)].numpy(), window)
        expected, _ = np.histogram(values[:, j], bins=bins, range=(lo[j], hi[j]))
        np.testing.assert_array_equal(hist.counts[j].numpy(), expected)
        assert hi[j] >= np.abs(values[:, j]).max() > hi[j] / 2  # R: the smallest power of two above


# ---- the stage on tiny models, against brute force ----------------------------------------------------------
def _each_token_run(root: Path) -> Path:
    docs = root / "docs.txt"
    docs.write_text("".join(d + "\n" for d in DOCS))
    trace_run(out=root / "run", model="tiny-gpt2", contexts=str(docs), each_token=True, method="activation",
              min_prefix=3, top_k=6, progress=False)  # fmt: skip
    map_run(root / "run", null_samples=0, stability_seeds=1, progress=False)
    return root / "run"


def _per_context_run(root: Path) -> Path:
    path = root / "contexts.txt"
    path.write_text("".join(f"{t}\t{g}\n" for t, g in CONTEXTS))
    trace_run(out=root / "run", model="tiny-llama", contexts=str(path), method="attribution", top_k=12,
              progress=False)  # fmt: skip
    map_run(root / "run", null_samples=0, stability_seeds=1, progress=False)
    return root / "run"


@pytest.fixture(scope="module")
def each_token_run(tmp_path_factory) -> Path:
    return _each_token_run(tmp_path_factory.mktemp("events"))


def _brute_force(lm, inputs: list[list[int]], candidates: list[list[int]], neurons: pd.DataFrame):
    """Each text alone through the model: every neuron's activation at every position of every text."""
    acts = []
    with torch.no_grad(), NeuronHook(lm.adapter) as hook:
        for ids in inputs:
            lm.model(input_ids=torch.tensor([ids]))
            acts.append({layer: hook.acts[layer][0].double().numpy() for layer in hook.acts})
    return acts


def _check_examples(lm, run: Path, inputs, candidates, context_ids, k: int, before: int, after: int) -> None:
    neurons = read_parquet(run / "graph" / "neurons.parquet")
    examples = read_parquet(run / "graph" / "neuron_examples.parquet")
    hists = read_parquet(run / "graph" / "neuron_hist.parquet")
    acts = _brute_force(lm, inputs, candidates, neurons)
    assert len(hists) == len(neurons)
    for layer, neuron in zip(neurons["layer"], neurons["neuron"], strict=True):
        found = [(acts[t][layer][p, neuron], t, p) for t, ps in enumerate(candidates) for p in ps]
        found.sort(key=lambda x: -x[0])
        mine = examples[(examples["layer"] == layer) & (examples["neuron"] == neuron)].sort_values("rank")
        assert mine["rank"].tolist() == list(range(min(k, len(found))))
        for row, (value, t, p) in zip(mine.itertuples(), found, strict=False):
            assert row.context_id == context_ids[t][candidates[t].index(p)]
            assert row.activation == pytest.approx(value, abs=1e-4)
            start, stop = max(0, p - before), min(len(inputs[t]), p + after + 1)
            np.testing.assert_allclose(row.activations, acts[t][layer][start:stop, neuron], atol=1e-4)
            assert list(row.tokens) == [lm.tokenizer.decode([i]) for i in inputs[t][start:stop]]
            assert row.target_index == p - start
        h = hists[(hists["layer"] == layer) & (hists["neuron"] == neuron)].iloc[0]
        values = np.array([v for v, _, _ in found])
        assert h["total"] == len(values) == sum(h["counts"])
        assert h["max"] == pytest.approx(values.max(), abs=1e-4)
        expected, _ = np.histogram(values, bins=len(h["counts"]), range=(h["lo"], h["hi"]))
        assert np.abs(expected - np.asarray(h["counts"])).sum() <= 2  # an activation on a bin edge may move


def test_each_token_examples_equal_brute_force_over_every_event(each_token_run: Path, tmp_path: Path) -> None:
    run = Path(shutil.copytree(each_token_run, tmp_path / "run"))
    result = neurons_run(run, examples=3, before=4, after=2, batch_size=2)
    lm = load_model("tiny-gpt2")
    documents = read_parquet(run / "documents.parquet")
    contexts = read_parquet(run / "contexts.parquet")
    inputs = [list(map(int, ids)) for ids in documents["token_ids"]]
    candidates, context_ids = [], []
    for doc in documents["doc_id"]:
        mine = contexts[contexts["doc_id"] == doc].sort_values("position")
        candidates.append(mine["position"].tolist())
        context_ids.append(mine["context_id"].tolist())
    _check_examples(lm, run, inputs, candidates, context_ids, 3, 4, 2)
    # an event's target is its document's next token
    ex = result.examples.iloc[0]
    ids = inputs[int(ex["doc_id"])]
    assert ex["target"] == lm.tokenizer.decode([ids[int(ex["position"]) + 1]])
    assert result.summary["positions"] == len(contexts)


def test_per_context_examples_equal_brute_force_at_the_prediction_position(tmp_path: Path) -> None:
    run = _per_context_run(tmp_path)
    result = neurons_run(run, examples=4, before=3, after=3, batch_size=3)
    lm = load_model("tiny-llama")
    contexts = read_parquet(run / "contexts.parquet")
    inputs = [list(map(int, ids)) for ids in contexts["input_ids"]]
    candidates = [[int(p)] for p in contexts["position"]]
    context_ids = [[int(c)] for c in contexts["context_id"]]
    _check_examples(lm, run, inputs, candidates, context_ids, 4, 3, 3)
    by_id = dict(zip(contexts["context_id"], contexts["target_tokens"], strict=True))
    for row in result.examples.head(20).itertuples():
        assert row.target == "".join(by_id[row.context_id]) and row.doc_id == -1


def test_stage_records_reuses_refuses_and_a_new_map_drops_the_tables(
    each_token_run: Path, tmp_path: Path
) -> None:
    run = Path(shutil.copytree(each_token_run, tmp_path / "run"))
    first = neurons_run(run, examples=2)
    record = RunDir(run).stage("neurons")
    assert record["status"] == "complete" and record["params"]["examples"] == 2
    assert sorted(record["outputs"]) == sorted(f"graph/{n}" for n in
                                               ("neuron_logits.parquet", "neuron_examples.parquet", "neuron_hist.parquet"))  # fmt: skip
    again = neurons_run(run, examples=2, batch_size=5)  # the batch does not change the tables
    assert again.reused and len(again.examples) == len(first.examples)
    with pytest.raises(NeuronmapError, match="other parameters"):
        neurons_run(run, examples=3)
    assert not neurons_run(run, examples=3, force=True).reused
    map_run(run, null_samples=0, stability_seeds=2, progress=False, force=True)
    assert not (run / "graph" / "neuron_logits.parquet").exists()  # graph/ replaced whole: nothing stale
    assert not neurons_run(run, examples=3).reused  # a new map: made again without --force


def test_the_page_shows_dashboards_when_present_and_builds_without(
    each_token_run: Path, tmp_path: Path
) -> None:
    from neuronmap.explore.data import load_view
    from neuronmap.explore.page import build_payload

    run = Path(shutil.copytree(each_token_run, tmp_path / "run"))
    bare = build_payload(load_view(run))
    assert bare["dashboards"] is None and len(bare["neurons"]["generic"]) == len(bare["neurons"]["layer"])
    neurons_run(run, examples=3, top_tokens=4)
    payload = build_payload(load_view(run))
    dash = payload["dashboards"]
    neurons = read_parquet(run / "graph" / "neurons.parquet")
    logits = read_parquet(run / "graph" / "neuron_logits.parquet")
    assert dash["carried"] == len(neurons)
    first = logits[(logits["layer"] == neurons["layer"][0]) & (logits["neuron"] == neurons["neuron"][0])]
    assert [dash["strings"][t] for t, _ in dash["up"][0]] == first[first["sign"] == 1]["token"].tolist()
    assert [dash["strings"][t] for t, _ in dash["down"][0]] == first[first["sign"] == -1]["token"].tolist()
    assert len(dash["examples"][0]) == 3 and dash["actHist"][0][2]
    json.dumps(payload, allow_nan=False)


def test_cli_writes_then_reuses_and_names_a_bad_option(each_token_run: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from neuronmap.cli import app

    run = Path(shutil.copytree(each_token_run, tmp_path / "run"))
    first = CliRunner().invoke(app, ["neurons", str(run), "--examples", "2", "--threads", "1"])
    assert first.exit_code == 0, first.output
    assert "neuron dashboards written" in first.output and "promotes" in first.output
    again = CliRunner().invoke(app, ["neurons", str(run), "--examples", "2"])
    assert again.exit_code == 0 and "reused" in again.output
    bad = CliRunner().invoke(app, ["neurons", str(run), "--examples", "0"])
    assert bad.exit_code != 0 and "--examples must be at least 1" in str(bad.exception or bad.output)
