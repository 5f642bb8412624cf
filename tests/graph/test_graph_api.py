"""map_run end to end on synthetic runs: outputs, determinism, scopes, k choice, reruns, bad input, no torch."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from neuronmap.errors import NeuronmapError
from neuronmap.graph import MapResult, map_run
from neuronmap.rundir import RunDir, atomic_write_parquet

FAST = {"null_samples": 3, "stability_seeds": 2}


def _truth(result: MapResult, truth: np.ndarray) -> np.ndarray:
    return truth[result.neurons["layer"], result.neurons["neuron"]]


def test_map_run_writes_every_output(planted_run):
    run, truth = planted_run()
    result = map_run(run, **FAST)
    folder = run / "graph"
    assert (
        sorted(p.name for p in folder.iterdir())
        == sorted(result.summary["outputs"])
        == [
            "cluster_tokens.parquet",
            "clusters.parquet",
            "edges.parquet",
            "graph.gexf",
            "graph.graphml",
            "neurons.parquet",
            "projection.parquet",
            "summary.json",
            "token_groups.parquet",
        ]
    )
    assert list(result.edges.columns) == ["layer", "neuron", "token_id", "token", "weight", "contexts"]
    assert {"layer", "neuron", "cluster", "merged_cluster", "degree", "strength"} <= set(
        result.neurons.columns
    )
    assert {"size", "layer_hist", "modularity_pruned", "modularity_full", "ncut", "merged_cluster"} <= set(
        result.clusters.columns
    )
    stage = RunDir(run).stage("map")
    assert stage["status"] == "complete" and stage["params"]["method"] == "leiden" and stage["finished_at"]
    assert adjusted_rand_score(_truth(result, truth), result.neurons["cluster"]) >= 0.9
    assert (result.neurons["global_id"] == result.neurons["layer"] * 40 + result.neurons["neuron"]).all()
    merged = result.clusters.set_index("cluster")["merged_cluster"]
    assert (result.neurons["merged_cluster"] == result.neurons["cluster"].map(merged)).all()
    assert (
        result.clusters["size"].sum() == len(result.neurons)
        and result.clusters["size"].is_monotonic_decreasing
    )
    assert result.summary["modularity_pruned"] == pytest.approx(result.clusters["modularity_pruned"].sum())
    test = result.summary["units"][0]["clusterability"]
    assert test["pairs"]["p"] == test["edges"]["p"] == test["swaps"]["p"] == pytest.approx(1 / 4)
    assert test["pairs"]["z"] > 3 and test["swaps"]["z"] > 3
    loaded = MapResult.load(run)
    for name in ["edges", "neurons", "clusters", "cluster_tokens", "token_groups", "projection"]:
        pd.testing.assert_frame_equal(getattr(loaded, name), pd.read_parquet(folder / f"{name}.parquet"))
    assert loaded.summary == json.loads((folder / "summary.json").read_text())
    for read in [nx.read_graphml, nx.read_gexf]:
        exported = read(folder / f"graph.{'graphml' if read is nx.read_graphml else 'gexf'}")
        assert exported.number_of_nodes() == len(result.neurons)
        assert exported.number_of_edges() == len(result.projection)


def test_same_seed_gives_byte_identical_outputs(planted_run, tmp_path):
    run, _ = planted_run()
    map_run(run, method="spectral", k_range="3..5", **FAST)
    first = {p.name: p.read_bytes() for p in (run / "graph").iterdir()}
    twin = tmp_path / "twin"
    shutil.copytree(run, twin, ignore=shutil.ignore_patterns("graph"))
    map_run(twin, method="spectral", k_range="3..5", force=True, **FAST)
    second = {p.name: p.read_bytes() for p in (twin / "graph").iterdir()}
    assert first.keys() == second.keys() and all(first[name] == second[name] for name in first)


def test_cross_layer_and_within_layer_scopes(planted_run):
    run, truth = planted_run()
    cross = map_run(run, **FAST)
    assert all(np.count_nonzero(hist) == 3 for hist in cross.clusters["layer_hist"])  # groups span the layers
    assert cross.clusters["layer"].isna().all() and len(cross.summary["units"]) == 1
    within = map_run(run, scope="within-layer", force=True, **FAST)
    assert [u["layer"] for u in within.summary["units"]] == [0, 1, 2]
    assert all(np.count_nonzero(hist) == 1 for hist in within.clusters["layer_hist"])
    assert (within.clusters["layer"] == within.clusters["main_layer"]).all()
    assert within.summary["clusters_per_layer"] == {"0": 4, "1": 4, "2": 4}
    for layer, part in within.neurons.groupby("layer"):
        assert adjusted_rand_score(truth[layer, part["neuron"]], part["cluster"]) >= 0.9
    # merging never crosses a layer in within-layer scope
    assert (within.neurons.groupby("merged_cluster")["layer"].nunique() == 1).all()
    assert all(u["clusterability"]["pairs"]["z"] > 0 for u in within.summary["units"])


@pytest.mark.parametrize("seed", [0, 1])
def test_spectral_chooses_the_planted_k_from_the_null(planted_run, seed):
    run, truth = planted_run(seed=seed)
    result = map_run(run, method="spectral", k_range="2..7", k_select="gap", **FAST)
    unit = result.summary["units"][0]
    assert [point["k"] for point in unit["ncut_curve"]] == [2, 3, 4, 5, 6, 7]
    assert unit["k"] == 4 and len(result.clusters) == 4
    assert adjusted_rand_score(_truth(result, truth), result.neurons["cluster"]) >= 0.9
    assert unit["clusterability"]["statistic"] == "ncut" and unit["clusterability"]["pairs"]["z"] > 0
    by_z = map_run(run, method="spectral", k_range="2..7", force=True, **FAST).summary["units"][0]
    z = [point["pairs"]["z"] for point in by_z["ncut_curve"]]
    assert by_z["k"] == by_z["ncut_curve"][int(np.argmax(z))]["k"]


@pytest.mark.parametrize("method", ["louvain", "leiden"])
def test_collaboration_skips_the_uninformative_edges_null(planted_run, method):
    run, _ = planted_run()
    unit = map_run(run, method=method, projection="collaboration", **FAST).summary["units"][0]
    assert (
        set(unit["clusterability"]) == {"pairs", "swaps", "statistic"}
        and "edges null skipped" in unit["notes"][0]
    )


def test_rerun_loads_and_other_options_need_force(planted_run):
    run, _ = planted_run()
    map_run(run, **FAST)
    assert map_run(run, **FAST).reused
    with pytest.raises(NeuronmapError, match="other parameters; pass --force"):
        map_run(run, merge_threshold=0.5, **FAST)
    redone = map_run(run, merge_threshold=0.5, force=True, **FAST)
    assert not redone.reused and RunDir(run).stage("map")["params"]["merge_threshold"] == 0.5


def test_exports_are_skipped_above_the_edge_limit(planted_run):
    run, _ = planted_run()
    result = map_run(run, export_max_edges=10, **FAST)
    assert (
        "graph.graphml" not in result.summary["outputs"] and "exports skipped" in result.summary["notes"][0]
    )


def test_bad_input_is_a_clear_error(planted_run, tmp_path):
    with pytest.raises(NeuronmapError, match="not a neuronmap run"):
        map_run(tmp_path / "missing")
    run, _ = planted_run("no-scores")
    (run / "scores.parquet").unlink()
    with pytest.raises(NeuronmapError, match=r"scores.parquet: no such table"):
        map_run(run)
    assert RunDir(run).stage("map")["status"] == "failed"
    assert not any(p.name.startswith(".graph") for p in run.iterdir())
    run, _ = planted_run("empty")
    scores = pd.read_parquet(run / "scores.parquet")
    atomic_write_parquet(scores.iloc[0:0], run / "scores.parquet")
    with pytest.raises(NeuronmapError, match="no rows"):
        map_run(run)
    run, _ = planted_run("unfinished")
    RunDir(run).set_stage("trace", status="running")
    with pytest.raises(NeuronmapError, match="stage 'trace' has not completed"):
        map_run(run)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"method": "kmeans"}, "--method 'kmeans': expected one of"),
        ({"projection": "jaccard"}, "--projection"),
        ({"k_range": "5..2"}, "--k-range"),
        ({"k_range": "a"}, "--k-range"),
        ({"neighbors": -1}, "--neighbors"),
        ({"export": "png"}, "--export"),
        ({"method": "spectral", "null_samples": 1}, "--null-samples 2 or more"),
    ],
)
def test_bad_options_are_clear_errors(planted_run, options, message):
    run, _ = planted_run()
    with pytest.raises(NeuronmapError, match=message):
        map_run(run, **options)


def test_graph_package_does_not_import_torch():
    code = "import neuronmap.graph, neuronmap.graph.api, sys; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("options", [{"method": "leiden"}, {"method": "spectral", "k_range": "4"}])
def test_no_null_samples_means_no_clusterability_test(planted_run, options):
    run, truth = planted_run()
    result = map_run(run, null_samples=0, stability_seeds=0, **options)
    unit = result.summary["units"][0]
    assert set(unit["clusterability"]) == {"statistic"} and unit["stability"]["ari"] == []
    assert adjusted_rand_score(_truth(result, truth), result.neurons["cluster"]) >= 0.9
    histograms = result.summary["layer_histograms"]
    assert histograms == {str(c): {"0": 10, "1": 10, "2": 10} for c in range(4)}


def test_an_exact_projection_too_big_to_hold_goes_through_the_operator(planted_run, monkeypatch):
    import neuronmap.graph.api as api

    monkeypatch.setattr(api, "EXACT_MAX_ENTRIES", 100)
    run, truth = planted_run()
    with pytest.raises(NeuronmapError, match="pass --neighbors"):
        map_run(run, method="leiden", neighbors=0, **FAST)
    result = map_run(run, method="spectral", k_range="4", neighbors=0, force=True, **FAST)
    assert result.summary["units"][0]["materialised"] is False and result.projection is None
    assert "not materialised" in result.summary["notes"][0] and result.neurons["degree"].isna().all()
    assert "graph.graphml" not in result.summary["outputs"]
    assert adjusted_rand_score(_truth(result, truth), result.neurons["cluster"]) >= 0.9
    assert result.summary["units"][0]["clusterability"]["pairs"]["z"] > 0


def test_top_level_api():
    import neuronmap
    import neuronmap.graph

    assert neuronmap.map_run is map_run
    assert neuronmap.graph.project.__module__ == "neuronmap.graph.projection"


def test_nulls_draws_only_the_kinds_asked_for(planted_run):
    run, _ = planted_run()
    options = FAST
    every = map_run(run, **options).summary
    only = map_run(run, nulls="swaps", force=True, **options).summary
    assert set(only["units"][0]["clusterability"]) == {"swaps", "statistic"}
    assert only["clusterability"]["null"] == "swaps" and only["clusterability"]["cost"]["test_networks"] == 3
    assert every["clusterability"]["cost"]["test_networks"] == 9
    # the swaps samples are seeded per kind, so they are the same draws with or without the other kinds
    assert only["units"][0]["clusterability"]["swaps"] == every["units"][0]["clusterability"]["swaps"]
    assert RunDir(run).stage("map")["params"]["nulls"] == ["swaps"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"nulls": "swaps,shuffled"}, "--nulls 'shuffled': expected one of edges, pairs, swaps"),
        ({"nulls": ""}, "--nulls '': must be one or more"),
        ({"nulls": "swaps", "method": "spectral"}, "keep pairs in --nulls"),
    ],
)
def test_nulls_are_checked(planted_run, options, message):
    run, _ = planted_run()
    with pytest.raises(NeuronmapError, match=re.escape(message)):
        map_run(run, **options)
