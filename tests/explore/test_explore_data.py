"""What the views show, computed from the run's tables: partitions, score mass, groups, layout, payload."""

from __future__ import annotations

import numpy as np
import pytest

from neuronmap.errors import NeuronmapError
from neuronmap.explore.data import clusterability_line, load_view, top_specific
from neuronmap.explore.layout import embed_profiles
from neuronmap.explore.page import HIST_BINS, build_payload
from neuronmap.rundir import RunDir


@pytest.fixture(scope="module")
def view(mapped_run):
    return load_view(mapped_run)


def test_partitions_mass_and_groups(view):
    n = len(view.map.neurons)
    part = view.partitions["cluster"]
    assert part.size.sum() == n and part.layer_hist.sum() == n and part.n == len(view.map.clusters)
    # The planted groups are found: each cluster's neurons sit in one block of neurons (one group).
    block = view.map.neurons["neuron"].to_numpy() // 6
    for c in range(part.n):
        assert len(set(block[part.labels == c])) == 1
    total = view.scores["magnitude"].sum()
    assert view.mass("cluster")["mass"].sum() == pytest.approx(total)
    by_pos = view.mass("cluster", "pos")
    assert by_pos["mass"].sum() == pytest.approx(total)  # every context has a pos
    assert set(view.groups) == {"relation", "pos"} and view.groups["pos"] == ["NOUN", "VERB"]
    matrix = view.group_matrix("cluster", "relation")
    assert np.allclose(matrix.sum(axis=1), 1.0)
    # relation r_g is carried by the cluster of group g: its row's largest share is on one cluster each.
    assert len(set(matrix.argmax(axis=1))) == len(view.groups["relation"])


def test_specific_clusters_and_layout_are_deterministic(view, mapped_run):
    specific = top_specific(view)
    assert len(specific) == 3 and specific[0]["bits"] >= specific[1]["bits"] >= specific[2]["bits"]
    assert specific[0]["tokens"]
    again = load_view(mapped_run)
    assert np.array_equal(again.partitions["cluster"].xy, view.partitions["cluster"].xy)


def test_layout_places_alike_profiles_close():
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 1, (3, 40)) ** 4
    profiles = np.vstack([c * rng.uniform(0.8, 1.2, (10, 40)) for c in centres])
    xy = embed_profiles(profiles, random_state=0)
    within = np.mean(
        [np.linalg.norm(xy[i] - xy[j]) for i in range(30) for j in range(30) if i // 10 == j // 10]
    )
    across = np.mean(
        [np.linalg.norm(xy[i] - xy[j]) for i in range(30) for j in range(30) if i // 10 != j // 10]
    )
    assert within < across / 3
    assert embed_profiles(profiles[:2]).shape == (2, 2)  # too few for t-SNE: principal components


def test_payload_lists_the_right_things(view):
    data = build_payload(view)
    neurons, part = data["neurons"], data["partitions"]["cluster"]
    n = len(neurons["layer"])
    assert len(neurons["hist"]) == n * HIST_BINS
    per_neuron = view.scores.groupby("row").size().reindex(range(n), fill_value=0).to_numpy()
    assert np.array_equal(np.asarray(neurons["hist"]).reshape(n, HIST_BINS).sum(axis=1), per_neuron)
    # A cluster's top contexts are contexts of its own group (synthetic: cluster <-> group of contexts).
    ids = np.asarray(data["contexts"]["id"])
    block = view.map.neurons["neuron"].to_numpy() // 6
    for c, rows in enumerate(part["contexts"]):
        group = block[view.partitions["cluster"].labels == c][0]
        assert rows and all(ids[ref] % 4 == group for ref, _ in rows[:5])
    assert data["meta"]["run"] == view.path.name and data["meta"]["contexts"] == len(view.contexts)


def test_unmapped_run_is_a_clear_error(mapped_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(mapped_run, run, ignore=shutil.ignore_patterns("graph"))
    rd = RunDir(run)
    manifest = rd.manifest()
    del manifest["stages"]["map"]
    rd.write_manifest(manifest)
    with pytest.raises(NeuronmapError, match="has no map yet; run `neuronmap map"):
        load_view(run)


def _unit(layer: int | None, **tests: tuple[float, float | None]) -> dict:
    return {"layer": layer, "clusterability": {k: {"p": p, "z": z} for k, (p, z) in tests.items()}}


def test_clusterability_line_reads_the_swaps_null_and_falls_back_to_pairs():
    both = {"units": [_unit(None, swaps=(0.05, 4.25), pairs=(1.0, -23.0))]}
    assert clusterability_line(both) == "(swaps null): all layers: p = 0.05, z = 4.2"
    older = {"units": [_unit(None, pairs=(0.5, None))]}  # a map made before the swaps null
    assert clusterability_line(older) == "(pairs null): all layers: p = 0.5"
    layers = {"units": [_unit(i, swaps=(p, 1.0)) for i, p in enumerate([0.4, 0.1, 0.2, 0.05, 0.3])]}
    assert clusterability_line(layers) == "(swaps null): 5 layers tested: p from 0.05 to 0.4 (median 0.2)"
    assert clusterability_line({"units": [{"layer": None, "clusterability": None}]}).startswith("not tested")
