"""`neuronmap verify`: the causal check of a map's clusters, against independent references.

The per-event effects are compared with plain forward passes of a model whose neurons are removed by zeroing
their output weights (zero ablation) or by a plain pre-hook (mean ablation), in float64; the null keeps the
cluster's neurons per layer; a seed gives the same table; user mistakes exit 2 with one line.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neuronmap.errors import NeuronmapError
from neuronmap.graph.api import map_run
from neuronmap.rundir import RunDir
from neuronmap.trace.runner import trace_run
from neuronmap.verify import verify_clusters
from neuronmap.verify.stats import adjust, draw_null_sets, neuron_set, passes, sample_events

MAP = {"null_samples": 0, "stability_seeds": 0, "export": "none"}
TEXT = (
    "The river bank was muddy after the rain, and the old boat rested there. In the town, the bank opened at nine "
    "and the clerk counted coins. Paris is the capital of France, and Rome is the capital of Italy."
)


@pytest.fixture(scope="module")
def facts_run(tmp_path_factory, tiny_models) -> tuple[Path, object]:
    """A per-context run of tiny-gpt2 (float64), traced and mapped."""
    lm = tiny_models("tiny-gpt2")
    run = tmp_path_factory.mktemp("verify") / "facts"
    trace_run(out=run, contexts="builtin:facts", keep="all", limit=40, method="attribution", top_k=16,
              progress=False, loaded=lm, model="tiny-gpt2", dtype="float64")  # fmt: skip
    map_run(run, **MAP)
    return run, lm


@pytest.fixture
def facts_copy(facts_run, tmp_path) -> tuple[Path, object]:
    run, lm = facts_run
    return Path(shutil.copytree(run, tmp_path / "facts")), lm


def _plain_logprob(lm, ids: list[int], position: int, targets: list[int], pre_hook=None) -> float:
    """log p(targets) of one unpadded row, by a plain forward (and plain pre-hooks), in float64."""
    handles = []
    if pre_hook is not None:
        for layer, module in enumerate(lm.adapter.modules):
            handles.append(module.register_forward_pre_hook(lambda m, a, layer=layer: pre_hook(layer, a)))
    try:
        with torch.no_grad():
            logits = lm.model(input_ids=torch.tensor([ids])).logits[0].double()
    finally:
        for h in handles:
            h.remove()
    lp = logits.log_softmax(-1)
    return float(sum(lp[position + k, t] for k, t in enumerate(targets)))


def _cluster_neurons(run: Path, cluster: int) -> dict[int, list[int]]:
    neurons = pd.read_parquet(run / "graph" / "neurons.parquet")
    mine = neurons[neurons["cluster"] == cluster]
    return {int(layer): rows["neuron"].tolist() for layer, rows in mine.groupby("layer")}


def test_zero_ablation_effects_match_zeroed_output_weights(facts_copy):
    run, lm = facts_copy
    result = verify_clusters(run, [0], null_samples=2, loaded=lm)
    effects = result.effects
    assert len(effects) == result.table.loc[0, "n_events_in"] + result.table.loc[0, "n_events_out"]
    contexts = pd.read_parquet(run / "contexts.parquet").set_index("context_id")
    own = _cluster_neurons(run, 0)
    saved = {layer: lm.adapter.neuron_weights(layer).clone() for layer in own}
    try:
        ablated = {}
        for layer, neurons in own.items():  # (d_mlp, d_model) view: a neuron's output weights are its row
            lm.adapter.neuron_weights(layer)[neurons] = 0
        for row in effects.itertuples():
            c = contexts.loc[row.context_id]
            ablated[row.context_id] = _plain_logprob(
                lm, list(c.input_ids), int(c.position), list(c.target_ids)
            )
    finally:
        for layer, weights in saved.items():
            lm.adapter.neuron_weights(layer).copy_(weights)
    for row in effects.itertuples():
        c = contexts.loc[row.context_id]
        clean = _plain_logprob(lm, list(c.input_ids), int(c.position), list(c.target_ids))
        assert row.clean == pytest.approx(clean, abs=1e-4)
        assert row.effect == pytest.approx(ablated[row.context_id] - clean, abs=1e-4)
    # in-events are exactly those whose first target token is one of the cluster's tokens
    tokens = pd.read_parquet(run / "graph" / "cluster_tokens.parquet")
    mine = tokens[
        (tokens.partition == "cluster") & (tokens.cluster == 0) & (tokens["rank"] < 10) & (tokens.score > 0)
    ]
    first = np.array([contexts.loc[i, "target_ids"][0] for i in effects["context_id"]])
    assert (effects["inside"].to_numpy() == np.isin(first, mine["token_id"])).all()
    assert effects["inside"].sum() == result.table.loc[0, "n_events_in"] >= 2


def test_mean_ablation_effects_match_a_plain_pre_hook(facts_copy):
    run, lm = facts_copy
    result = verify_clusters(run, [1], ablate="mean", null_samples=1, loaded=lm)
    effects = result.effects
    contexts = pd.read_parquet(run / "contexts.parquet").set_index("context_id")
    rows = [contexts.loc[i] for i in effects["context_id"]]
    # The reference mean: every token of the rows run (here the cluster's events), by plain pre-hooks.
    total, count = {}, 0
    for c in rows:

        def capture(layer, args):
            total[layer] = total.get(layer, 0) + args[0][0].double().sum(0)

        _plain_logprob(lm, list(c.input_ids), int(c.position), list(c.target_ids), capture)
        count += len(c.input_ids)
    own = _cluster_neurons(run, 1)

    def set_mean(layer, args):
        if layer not in own:
            return None
        x = args[0].clone()
        x[..., own[layer]] = (total[layer] / count)[own[layer]].to(x.dtype)
        return (x, *args[1:])

    for row, c in zip(effects.itertuples(), rows, strict=True):
        ablated = _plain_logprob(lm, list(c.input_ids), int(c.position), list(c.target_ids), set_mean)
        assert row.ablated == pytest.approx(ablated, abs=1e-4)


def test_each_token_events_match_plain_prefixes(tmp_path, tiny_models):
    lm = tiny_models("tiny-gpt2")
    docs = tmp_path / "docs.jsonl"
    docs.write_text(
        "".join(json.dumps({"text": t}) + "\n" for t in [TEXT, TEXT[::-1].capitalize(), TEXT[40:]])
    )
    run = tmp_path / "events"
    trace_run(out=run, contexts=str(docs), each_token=True, method="direct", min_prefix=4, top_k=8,
              progress=False, loaded=lm, model="tiny-gpt2", dtype="float64")  # fmt: skip
    map_run(run, **MAP)
    result = verify_clusters(run, [0], null_samples=1, max_events=40, loaded=lm)
    effects = result.effects
    assert len(effects) == 40 and effects["inside"].sum() >= 2
    events = pd.read_parquet(run / "contexts.parquet").set_index("context_id")
    documents = pd.read_parquet(run / "documents.parquet").set_index("doc_id")
    own = _cluster_neurons(run, 0)

    def zero(layer, args):
        if layer not in own:
            return None
        x = args[0].clone()
        x[..., own[layer]] = 0
        return (x, *args[1:])

    for row in effects.itertuples():
        e = events.loc[row.context_id]
        ids = list(documents.loc[e.doc_id, "token_ids"][: e.position + 1])
        target = [int(documents.loc[e.doc_id, "token_ids"][e.position + 1])]
        assert row.clean == pytest.approx(_plain_logprob(lm, ids, int(e.position), target), abs=1e-4)
        assert row.ablated == pytest.approx(_plain_logprob(lm, ids, int(e.position), target, zero), abs=1e-4)


def test_null_sets_keep_the_neurons_per_layer():
    rng = np.random.default_rng(0)
    own = neuron_set(np.array([0, 0, 0, 2, 2]), np.array([5, 1, 3, 7, 0]))
    pool = neuron_set(np.repeat([0, 2], 10), np.r_[np.arange(10), np.arange(10) * 3])
    sets, level = draw_null_sets(own, pool, 64, 50, rng)
    assert level == "map" and len(sets) == 50
    for s in sets:
        assert {k: len(v) for k, v in s.items()} == {0: 3, 2: 2}
        assert not set(s[0]) & {1, 3, 5} and not set(s[2]) & {0, 7}
        assert set(s[0]) <= set(range(10)) and set(s[2]) <= set(range(0, 30, 3))
    # a layer whose map pool is too small draws from the layer's other neurons, then from the whole layer
    small = neuron_set(np.array([1, 1, 1]), np.array([0, 1, 2]))
    sets, level = draw_null_sets(small, neuron_set(np.array([1]), np.array([9])), 8, 5, rng)
    assert level == "layer" and all(not set(s[1]) & {0, 1, 2} for s in sets)
    big = neuron_set(np.full(6, 1), np.arange(6))
    sets, level = draw_null_sets(big, {}, 8, 5, rng)
    assert level == "layer with own" and all(len(s[1]) == 6 for s in sets)


def test_event_budget_and_the_pass_rule():
    rng = np.random.default_rng(0)
    inside = np.r_[np.ones(10, bool), np.zeros(100, bool)]
    inner, outer = sample_events(inside, 40, rng)
    assert len(inner) == 10 and len(outer) == 30 and set(outer) <= set(range(10, 110))
    inner, outer = sample_events(np.r_[np.ones(100, bool), np.zeros(5, bool)], 40, rng)
    assert len(inner) == 35 and len(outer) == 5
    assert np.isnan(adjust([np.nan, 0.01])[0])
    table = pd.DataFrame({"p_adjusted": [0.01, 0.01, 0.2, np.nan], "ci_high": [-0.1, 0.1, -0.1, -0.1]})
    assert passes(table).tolist() == [True, False, False, False]


def test_seed_reproduces_the_table_and_summary(facts_copy):
    run, lm = facts_copy
    first = verify_clusters(run, [0, 2], null_samples=3, seed=4, loaded=lm)
    table_bytes = (run / "graph" / "verify.parquet").read_bytes()
    again = verify_clusters(run, [0, 2], null_samples=3, seed=4, loaded=lm, force=True)
    assert (run / "graph" / "verify.parquet").read_bytes() == table_bytes
    pd.testing.assert_frame_equal(first.table, again.table)
    assert first.summary == again.summary
    other = verify_clusters(run, [0, 2], null_samples=3, seed=5, loaded=lm)
    assert not np.allclose(other.table["null_mean"], first.table["null_mean"], equal_nan=True)
    # the same options again: loaded, not recomputed
    reused = verify_clusters(run, [0, 2], null_samples=3, seed=5, loaded=lm)
    assert reused.reused and reused.effects is None
    pd.testing.assert_frame_equal(reused.table, other.table)


def test_summary_section_and_run_record(facts_copy):
    run, lm = facts_copy
    result = verify_clusters(run, null_samples=4, loaded=lm)
    table = pd.read_parquet(run / "graph" / "verify.parquet")
    assert list(table.columns[:15]) == ["cluster", "n_neurons", "n_tokens", "n_events_in", "n_events_out",
        "effect_in", "effect_out", "diff", "ci_low", "ci_high", "null_mean", "null_sd", "p", "p_adjusted",
        "passes"]  # fmt: skip
    clusters = pd.read_parquet(run / "graph" / "clusters.parquet")
    assert table["cluster"].tolist() == clusters.loc[clusters["size"] >= 2, "cluster"].tolist()
    tested = table[table["p"].notna()]
    assert ((tested["p"] >= 1 / 5) & (tested["p"] <= 1)).all()
    assert (tested["ci_low"] <= tested["diff"]).all() and (tested["diff"] <= tested["ci_high"]).all()
    section = json.loads((run / "graph" / "summary.json").read_text())["verify"]
    assert section == json.loads(json.dumps(result.summary))
    assert section["p_floor"] == pytest.approx(0.2) and section["tested"] == len(tested)
    assert section["passing"] == table.loc[table["passes"], "cluster"].tolist()
    assert section["share_passing"] == pytest.approx(len(section["passing"]) / len(tested))
    assert section["params"]["null_samples"] == 4 and section["cost"]["ablated_sets"] == 5 * len(tested)
    record = RunDir(run).stage("verify")
    assert record["status"] == "complete" and "graph/verify.parquet" in record["outputs"]
    assert record["map"]["finished_at"] == RunDir(run).stage("map")["finished_at"]
    # a new map replaces graph/ and the check with it
    map_run(run, force=True, **{**MAP, "seed": 1})
    assert not (run / "graph" / "verify.parquet").exists()
    assert "verify" not in json.loads((run / "graph" / "summary.json").read_text())


def test_user_mistakes(facts_copy, tmp_path):
    run, lm = facts_copy
    with pytest.raises(NeuronmapError, match="--ablate 'max': expected one of zero, mean"):
        verify_clusters(run, ablate="max", loaded=lm)
    with pytest.raises(NeuronmapError, match=r"unknown cluster id\(s\) 999"):
        verify_clusters(run, [0, 999], loaded=lm)
    with pytest.raises(NeuronmapError, match="--null-samples 0: must be >= 1"):
        verify_clusters(run, null_samples=0, loaded=lm)
    shutil.rmtree(run / "graph")
    data = json.loads((run / "run.json").read_text())
    del data["stages"]["map"]
    (run / "run.json").write_text(json.dumps(data))
    with pytest.raises(NeuronmapError, match="has no map yet"):
        verify_clusters(run, loaded=lm)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["{missing}"], "not a neuronmap run"),
        (["{run}", "--ablate", "half"], "--ablate 'half': expected one of zero, mean"),
        (["{run}", "--clusters", "0,77"], "unknown cluster id(s) 77"),
        (["{run}", "--clusters", "a,b"], "--clusters takes comma-separated integers"),
        (["{run}", "--max-events", "2"], "--max-events 2: must be >= 4"),
    ],
)
def test_bad_input_exits_2_with_one_line(facts_run, tmp_path, arguments, message):
    run, _ = facts_run
    arguments = [a.format(run=run, missing=tmp_path / "missing") for a in arguments]
    done = subprocess.run(
        [sys.executable, "-c", "from neuronmap.cli import main; main()", "verify", *arguments],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_verify_command_on_a_run_without_a_map_exits_2(tmp_path, tiny_models):
    run = tmp_path / "traced"
    trace_run(out=run, contexts="builtin:facts", keep="all", limit=4, top_k=4, progress=False,
              loaded=tiny_models("tiny-gpt2"), model="tiny-gpt2", dtype="float64")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", "from neuronmap.cli import main; main()", "verify", str(run)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "has no map yet; run `neuronmap map" in done.stderr


def test_the_demo_measurement_keeps_what_the_check_wrote(facts_copy, tmp_path, monkeypatch):
    """``bench.verify_demo --checked`` copies a checked run's summary section and table into its result file."""
    from bench import verify_demo

    run, lm = facts_copy
    result = verify_clusters(run, [0, 1], null_samples=2, loaded=lm)
    monkeypatch.setattr(verify_demo, "RESULT", tmp_path / "verify_demo.json")
    monkeypatch.setattr(sys, "argv", ["verify_demo", str(run), "--checked"])
    verify_demo.main()
    kept = json.loads((tmp_path / "verify_demo.json").read_text())
    assert kept["verify"] == json.loads((run / "graph" / "summary.json").read_text())["verify"]
    assert [c["cluster"] for c in kept["clusters"]] == result.table["cluster"].tolist()
    assert kept["wall_seconds"] == round(RunDir(run).stage("verify")["timing"]["seconds"], 1)
