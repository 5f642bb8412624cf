"""`neuronmap figures`: PNG and SVG of every figure, the same bytes each time, for every kind of map."""

from __future__ import annotations

import shutil

import pytest

from neuronmap.explore.figures import write_figures
from neuronmap.graph.api import map_run

NAMES = {"cluster_map", "layers", "clusterability", "token_groups", "groups_relation", "groups_pos"}


def test_every_figure_as_png_and_svg_deterministic(run_copy, tmp_path):
    written = write_figures(run_copy)
    assert {(p.stem, p.suffix) for p in written} == {(n, s) for n in NAMES for s in (".png", ".svg")}
    assert all(p.parent == run_copy / "figures" for p in written)
    for path in written:
        data = path.read_bytes()
        assert data.startswith(b"\x89PNG") if path.suffix == ".png" else b"<svg" in data[:2000]
    again = write_figures(run_copy, tmp_path / "again")
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in written]


@pytest.mark.parametrize(
    "params",
    [
        {"method": "spectral", "k_range": "2..6", "null_samples": 2},
        {"scope": "within-layer", "null_samples": 2},
    ],
)
def test_clusterability_figure_for_spectral_and_within_layer(mapped_run, tmp_path, params):
    run = shutil.copytree(mapped_run, tmp_path / "run")
    map_run(run, force=True, stability_seeds=0, export="none", **params)
    written = write_figures(run, formats=("png",))
    assert (run / "figures" / "clusterability.png") in written


def test_cluster_map_stars_coherent_clusters(run_copy):
    import pandas as pd

    from neuronmap.explore.data import load_view
    from neuronmap.explore.figures import _cluster_map, _clusterability
    from neuronmap.rundir import atomic_write_parquet

    clusters = pd.read_parquet(run_copy / "graph" / "clusters.parquet")
    clusters["coherent"] = clusters["cluster"] < 2  # as a map with embeddings would mark them
    atomic_write_parquet(clusters, run_copy / "graph" / "clusters.parquet")
    view = load_view(run_copy)
    fig = _cluster_map(view)
    ax = fig.axes[0]
    assert "2 with coherent top tokens (*)" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["coherent top tokens"]
    labels = {t.get_text().split(" ")[0] for t in ax.texts}
    assert {"#0*", "#1*"} <= labels and "#2" in labels
    lines = {line.get_label() for line in _clusterability(view).axes[0].get_lines()}
    assert {"modularity", "modularity on the full projection (not tested)"} <= lines
