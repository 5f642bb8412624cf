"""The map stage: trace scores -> neuron<->token graph -> neuron graph -> communities -> tokens (RUN/graph/).

``map_run`` is what ``neuronmap map`` calls. Everything is computed first and written into a temporary folder
that replaces ``RUN/graph`` only when complete; ``run.json`` says ``complete`` only after that. Outputs depend
only on the inputs and the parameters (``seed`` included): the wall-clock fields are ``finished_at`` and
``timing`` (the seconds of the null samples) in ``run.json``.

Scope ``within-layer`` runs the whole pipeline (projection, clustering, nulls, stability) on each layer alone,
so each layer has its own modularity, k and clusterability; ``cross-layer`` runs it once on all neurons.

Two modularities of the same partition: ``modularity_pruned`` on the graph that was clustered (each neuron's top
``--neighbors`` and/or the weights >= ``--threshold``), and ``modularity_full`` on the unpruned projection of the
same factor (exact, never materialised when the projection has no negative weights: see
:class:`~neuronmap.graph.projection.GramOperator`). Pruning keeps the strong within-cluster links and drops the
weak ones between clusters, so the pruned value is usually the higher one.

Clusterability that survives the choice of k (spectral): k is chosen on one set of null samples (the n-cut's z
or gap against the ``pairs`` null at every k), then p and z come from a *fresh*, independently seeded set of
null samples drawn only at the chosen k, so the reported test is one test, not the best of many. Leiden and
Louvain choose no k (the number of communities comes from the method), and their modularity is tested against
the same method on the nulls. With n samples p cannot go below 1/(n + 1) (``p_floor``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from neuronmap.errors import NeuronmapError
from neuronmap.graph.bipartite import bipartite_matrix, build_edges
from neuronmap.graph.clusterability import null_statistics, significance, stability
from neuronmap.graph.communities import Leiden, Louvain, Spectral, SpectralSweep, canonical_labels
from neuronmap.graph.config import (  # noqa: F401  (the map's parameters, importable from here as before)
    BACKENDS,
    EDGE_SCORES,
    K_SELECT,
    METHODS,
    SCOPES,
    TOKEN_FIELDS,
    MapConfig,
    _choice,
    parse_k_range,
)
from neuronmap.graph.export import write_exports
from neuronmap.graph.meaning import (
    COHERENCE_ALPHA,
    COHERENCE_DRAWS,
    COHERENCE_TOKENS,
    FREQUENCY_BINS,
    GENERIC_RULE,
    GROUP_PERMUTATIONS,
    MIN_BIN_TOKENS,
    cluster_coherence,
    dominant_clusters,
    generic_neurons,
    group_alignment,
    group_columns,
    load_embeddings,
    n_frequency_bins,
    token_frequency,
)
from neuronmap.graph.projection import (
    BlockRunner,
    GramOperator,
    gram_factor,
    gram_graph,
    gram_nnz_bound,
)
from neuronmap.graph.quality import Graph, cluster_weights, degrees, modularity, partition_table
from neuronmap.graph.tokens import cluster_token_matrix, merge_clusters, token_groups, token_table
from neuronmap.rundir import (
    GRAPH,
    RunDir,
    atomic_write_json,
    atomic_write_parquet,
    read_parquet,
    stage,
    write_error,
)
from neuronmap.rundir.reprs import run_html

TABLES = ("edges", "neurons", "clusters", "cluster_tokens", "token_groups", "projection")
# Above this many entries an exact projection is not materialised (spectral then uses an operator).
EXACT_MAX_ENTRIES = 20_000_000
# Entropy appended to a unit's null seed for the test samples drawn at the chosen k: independent of the
# samples that chose it.
TEST_STREAM = 1
HEADLINE_NULLS = ("swaps", "pairs", "edges")  # the first one present is the summary's p and z
P_FLOOR_TARGET = 0.01  # below this many samples the summary notes that p cannot reach it
SUMMARY_TOP = 10  # largest clusters in summary.json, and tokens per cluster in clusters.parquet


@dataclass
class MapResult:
    """The map of a run: the tables of ``RUN/graph/`` as DataFrames, and ``summary.json`` as a dict."""

    path: Path
    summary: dict[str, Any]
    edges: pd.DataFrame
    neurons: pd.DataFrame
    clusters: pd.DataFrame
    cluster_tokens: pd.DataFrame
    token_groups: pd.DataFrame
    projection: pd.DataFrame | None = field(default=None)
    reused: bool = False  # True when map_run found this map already complete and only loaded it
    # Seconds spent on the null samples (clusterability); kept out of summary.json, which depends only on the
    # inputs, and recorded in run.json's map stage instead.
    null_seconds: float | None = None

    @classmethod
    def load(cls, run: str | Path | RunDir) -> MapResult:
        """Read a completed map back from ``RUN/graph/``."""
        rd = run if isinstance(run, RunDir) else RunDir(run)
        rd.require_stage("map")
        folder = rd.path / GRAPH
        projection_path = folder / "projection.parquet"
        return cls(
            path=folder,
            summary=json.loads((folder / "summary.json").read_text()),
            projection=read_parquet(projection_path) if projection_path.is_file() else None,
            **{name: read_parquet(folder / f"{name}.parquet") for name in TABLES if name != "projection"},
        )

    def _repr_html_(self) -> str:  # a notebook shows the run's summary
        return run_html(self.path.parent, "neuronmap map")


# ---- one scope unit: all neurons, or one layer ----------------------------------------------------------
def _neuron_graph(matrix: sp.csr_array, cfg: MapConfig, runner: BlockRunner | None = None) -> Graph:
    factor = gram_factor(matrix, cfg.projection)
    if cfg.neighbors is None and cfg.threshold is None and gram_nnz_bound(factor) > EXACT_MAX_ENTRIES:
        if cfg.method != "spectral" or (factor.data < 0).any():
            raise NeuronmapError(
                f"the exact projection could hold {gram_nnz_bound(factor):,} entries, too many to "
                "materialise: pass --neighbors (e.g. 64) or --threshold"
                + ("" if cfg.method != "spectral" else " (or an --edge-score without negative weights)")
            )
        return GramOperator(factor)
    return gram_graph(factor, cfg.neighbors, cfg.threshold, runner)


def _full_graph(matrix: sp.csr_array, graph: Graph, cfg: MapConfig) -> Graph | None:
    """The unpruned projection of a unit (positive weights, as the pruned one keeps): the clustered graph itself
    when nothing was pruned, an operator when the projection has no negative weight, else the exact product
    when it is small enough to materialise; None otherwise."""
    if cfg.neighbors is None and cfg.threshold is None:
        return graph
    factor = gram_factor(matrix, cfg.projection)
    if not (factor.data < 0).any():
        return GramOperator(factor)
    if gram_nnz_bound(factor) <= EXACT_MAX_ENTRIES:
        return gram_graph(factor)
    return None


def _community_method(cfg: MapConfig, seed: int) -> Leiden | Louvain:
    """Leiden or Louvain, as ``cfg.method`` says: they find the number of communities themselves."""
    if cfg.method == "leiden":
        return Leiden(cfg.resolution, random_state=seed)
    return Louvain(cfg.resolution, random_state=seed)


def _clusterer(cfg: MapConfig, seed: int, k: int) -> Leiden | Louvain | Spectral:
    """The unit's method at a seed: spectral into the chosen ``k`` clusters, or a community method."""
    return Spectral(k, random_state=seed) if cfg.method == "spectral" else _community_method(cfg, seed)


@dataclass
class _Clustered:
    """How one unit was clustered and tested."""

    labels: np.ndarray
    k: int  # the k chosen (spectral) or the number of communities found (Leiden, Louvain)
    clusterability: dict[str, Any]  # the test against each null kind
    selection: str  # how k came about, in words
    cost: dict[str, int]  # null networks projected and clustered: selection_networks, test_networks
    seconds: float  # spent on the null samples
    ncut_curve: list[dict[str, Any]] | None = None  # spectral: the n-cut and its tests at every k
    notes: list[str] = field(default_factory=list)


def _map_unit(
    matrix: sp.csr_array,
    layers: np.ndarray,
    cfg: MapConfig,
    unit: int,
    progress: bool,
    runner: BlockRunner | None = None,
) -> tuple[Graph, np.ndarray, dict[str, Any]]:
    """Cluster one unit; returns its graph, canonical labels and its summary entry. ``runner`` computes the
    row blocks of the projections (of the unit and of its nulls), e.g. on Ray."""
    graph = _neuron_graph(matrix, cfg, runner)
    info = _unit_info(graph, layers, cfg)
    kinds = _null_kinds(cfg, info["notes"])
    connected = int((degrees(graph) > 0).sum())
    assert not isinstance(cfg.k_range, str)  # MapConfig parsed it
    if connected < 2 or (cfg.method == "spectral" and connected < min(cfg.k_range)):
        info["notes"].append(f"only {connected} neuron(s) share tokens: every neuron is its own cluster")
        return graph, np.arange(matrix.shape[0], dtype=np.int32), info
    seed = (cfg.seed, unit)
    if cfg.method == "spectral":
        found = _spectral_unit(graph, matrix, layers, cfg, kinds, seed, progress, runner)
    else:
        found = _community_unit(graph, matrix, layers, cfg, kinds, seed, progress, runner)
    statistic = "ncut" if cfg.method == "spectral" else "modularity"
    info["notes"] += found.notes
    info |= {
        "k": found.k,
        "ncut_curve": found.ncut_curve,
        "clusterability": found.clusterability | {"statistic": statistic},
    }
    info["test"] = (
        _headline(info["clusterability"], kinds, found.selection, found.cost, found.k) if kinds else None
    )
    info["_seconds"] = found.seconds
    seeds = [cfg.seed + i for i in range(1, cfg.stability_seeds + 1)]
    info["stability"] = stability(
        found.labels, [_clusterer(cfg, s, found.k).fit(graph).labels_ for s in seeds], seeds
    )
    return graph, found.labels, info


def _unit_info(graph: Graph, layers: np.ndarray, cfg: MapConfig) -> dict[str, Any]:
    """A unit's summary entry before clustering: where and how large it is; the rest is filled in later."""
    return {
        "layer": int(layers[0]) if cfg.scope == "within-layer" else None,
        "neurons": graph.shape[0],
        "neuron_edges": None if isinstance(graph, GramOperator) else int(graph.nnz // 2),
        "materialised": not isinstance(graph, GramOperator),
        "k": None,
        "ncut_curve": None,
        "clusterability": None,
        "test": None,  # the one test the unit reports (see _headline)
        "stability": None,
        "notes": [],
    }


def _null_kinds(cfg: MapConfig, notes: list[str]) -> list[str]:
    """The null kinds a unit is tested against (none without null samples). The edges null is skipped for the
    collaboration projection, which ignores edge weights, and ``notes`` says so."""
    if cfg.projection == "collaboration" and cfg.null_samples and "edges" in cfg.nulls:
        notes.append("edges null skipped: the collaboration projection ignores edge weights")
    return [
        k for k in cfg.nulls if cfg.null_samples and not (k == "edges" and cfg.projection == "collaboration")
    ]


def _ncut_nulls(
    matrix: sp.csr_array,
    layers: np.ndarray,
    ks: Sequence[int] | np.ndarray,
    cfg: MapConfig,
    kinds: list[str],
    seed: tuple[int, ...],
    progress: bool,
    runner: BlockRunner | None,
) -> dict[str, np.ndarray]:
    """The n-cut of spectral clustering at each k of ``ks`` on every null sample (NaN where a null cannot make
    k clusters): kind -> (samples, len(ks))."""

    def statistic(null: sp.csr_array, null_seed: int) -> np.ndarray:
        result = SpectralSweep(ks, random_state=null_seed).fit(_neuron_graph(null, cfg, runner))
        curve = np.full(len(ks), np.nan)
        curve[np.searchsorted(ks, result.k_values_)] = result.ncut_
        return curve

    return null_statistics(
        matrix, layers, statistic, kinds=kinds, n_samples=cfg.null_samples, seed=seed, progress=progress
    )


def _choose_k(curve: list[dict[str, Any]], cfg: MapConfig) -> tuple[int, list[str]]:
    """The index of the k with the largest ``--k-select`` statistic of the n-cut against the pairs null (the
    first k when there is one only), and a note when no k has that statistic."""
    if len(curve) < 2:
        return 0, []
    score = [point["pairs"][cfg.k_select] for point in curve]  # MapConfig made sure there are null samples
    best = int(np.argmax([-math.inf if value is None else value for value in score]))
    if score[best] is None:
        return best, [f"no k has a {cfg.k_select} against the pairs null; took the smallest k"]
    return best, []


def _spectral_unit(
    graph: Graph,
    matrix: sp.csr_array,
    layers: np.ndarray,
    cfg: MapConfig,
    kinds: list[str],
    seed: tuple[int, ...],
    progress: bool,
    runner: BlockRunner | None,
) -> _Clustered:
    """Spectral clustering at every k of ``--k-range``; k is chosen on one set of null samples and, when there
    was a choice, tested on fresh samples drawn at that k only (see the module docstring)."""
    assert not isinstance(cfg.k_range, str)  # MapConfig parsed it
    sweep = SpectralSweep(cfg.k_range, random_state=cfg.seed, progress=progress).fit(graph)
    ks = sweep.k_values_
    start = time.perf_counter()
    nulls = _ncut_nulls(matrix, layers, ks, cfg, kinds, seed, progress, runner)
    seconds = time.perf_counter() - start
    curve: list[dict[str, Any]] = [
        {"k": int(kk), "ncut": float(sweep.ncut_[i])}
        | {kind: significance(sweep.ncut_[i], nulls[kind][:, i], higher_is_better=False) for kind in kinds}
        for i, kk in enumerate(ks)
    ]
    best, notes = _choose_k(curve, cfg)
    k = int(ks[best])
    networks = len(kinds) * cfg.null_samples
    if len(ks) > 1 and kinds:
        # The test: fresh null samples (their own seeds), clustered at the chosen k only.
        start = time.perf_counter()
        test_nulls = _ncut_nulls(matrix, layers, [k], cfg, kinds, (*seed, TEST_STREAM), progress, runner)
        seconds += time.perf_counter() - start
        test = {
            kind: significance(sweep.ncut_[best], test_nulls[kind][:, 0], higher_is_better=False)
            for kind in kinds
        }
        selection = (
            f"held-out: k = {k} chosen from {len(ks)} values of --k-range by the largest {cfg.k_select} of "
            f"the n-cut against {cfg.null_samples} pairs-null samples; p and z from {cfg.null_samples} fresh, "
            "independently seeded samples of each null, clustered at that k only"
        )
        cost = {"selection_networks": networks, "test_networks": networks}
    else:
        test = {kind: curve[best][kind] for kind in kinds}
        selection = f"fixed: k = {k} is the only --k-range value, so no k was chosen"
        cost = {"selection_networks": 0, "test_networks": networks}
    return _Clustered(sweep.labels_[best], k, test, selection, cost, seconds, curve, notes)


def _community_unit(
    graph: Graph,
    matrix: sp.csr_array,
    layers: np.ndarray,
    cfg: MapConfig,
    kinds: list[str],
    seed: tuple[int, ...],
    progress: bool,
    runner: BlockRunner | None,
) -> _Clustered:
    """Leiden or Louvain: the method finds the number of communities itself; its modularity is tested against
    the same method on each null."""
    labels = _community_method(cfg, cfg.seed).fit(graph).labels_

    def statistic(null: sp.csr_array, null_seed: int) -> np.ndarray:
        null_graph = _neuron_graph(null, cfg, runner)
        null_labels = _community_method(cfg, null_seed).fit(null_graph).labels_
        return np.array([modularity(null_graph, null_labels, cfg.resolution)])

    start = time.perf_counter()
    nulls = null_statistics(
        matrix, layers, statistic, kinds=kinds, n_samples=cfg.null_samples, seed=seed, progress=progress
    )
    seconds = time.perf_counter() - start
    real = modularity(graph, labels, cfg.resolution)
    k = int(labels.max()) + 1
    selection = (
        f"community method: {cfg.method} found {k} communities itself (no choice over k); its "
        "modularity (on the pruned graph it clustered) is compared with the same method on each null"
    )
    return _Clustered(
        labels,
        k,
        {kind: significance(real, nulls[kind][:, 0], higher_is_better=True) for kind in kinds},
        selection,
        {"selection_networks": 0, "test_networks": len(kinds) * cfg.null_samples},
        seconds,
    )


def _headline(
    tests: dict[str, Any], kinds: Sequence[str], selection: str, cost: dict[str, int], k: int | None
) -> dict[str, Any]:
    """The one test a unit reports: p and z against the first null of ``HEADLINE_NULLS`` that was drawn, how k
    was chosen, the floor of p and the cost in null networks (projected and clustered)."""
    null = next((kind for kind in HEADLINE_NULLS if kind in kinds), None)
    found = (tests.get(null) if null is not None else None) or {}
    samples = int(found.get("n") or 0)
    return {
        "p": found.get("p"),
        "z": found.get("z"),
        "null": null,
        "samples": samples,
        "k": k,
        "selection": selection,
        "p_floor": 1 / (samples + 1) if samples else None,
        "cost": cost,
    }


# ---- the run ----------------------------------------------------------------------------------------------
def _units(layers: np.ndarray, scope: str) -> list[slice]:
    if scope == "cross-layer":
        return [slice(0, len(layers))]
    bounds = np.flatnonzero(np.r_[True, layers[1:] != layers[:-1], True])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _json_safe(obj: Any) -> Any:
    """JSON values only: numpy scalars unboxed, NaN and infinities as null."""
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _fingerprint(record: dict[str, Any] | None) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _model_shape(manifest: dict[str, Any], edges: pd.DataFrame) -> tuple[int, int]:
    model = manifest.get("model") or {}
    try:
        n_layers, d_mlp = int(model["n_layers"]), int(model["d_mlp"])
    except (KeyError, TypeError, ValueError):
        raise NeuronmapError(
            "run.json: model.n_layers and model.d_mlp are missing; was it written by trace?"
        ) from None
    if edges["layer"].min() < 0 or edges["layer"].max() >= n_layers:
        raise NeuronmapError(f"scores.parquet: a layer lies outside 0..{n_layers - 1} (model.n_layers)")
    if edges["neuron"].min() < 0 or edges["neuron"].max() >= d_mlp:
        raise NeuronmapError(f"scores.parquet: a neuron lies outside 0..{d_mlp - 1} (model.d_mlp)")
    return n_layers, d_mlp


def _cluster(
    matrix: sp.csr_array,
    layers: np.ndarray,
    cfg: MapConfig,
    progress: bool,
    runner: BlockRunner | None = None,
) -> tuple[list[slice], list[Graph], list[dict[str, Any]], np.ndarray]:
    """Cluster every scope unit; returns the units (row slices), their graphs and summaries, and the labels of
    all neurons (canonical over all units, so cluster 0 is the largest)."""
    units = _units(layers, cfg.scope)
    graphs, infos, raw = [], [], np.empty(len(layers), np.int64)
    offset = 0
    for i, rows in enumerate(units):
        graph, labels, info = _map_unit(matrix[rows], layers[rows], cfg, i, progress, runner)
        raw[rows] = labels + offset
        offset += int(labels.max()) + 1
        graphs.append(graph)
        infos.append(info)
        info["_full"] = _full_graph(matrix[rows], graph, cfg)
    return units, graphs, infos, canonical_labels(raw)


def _cluster_quality(
    units: list[slice], graphs: list[Graph], infos: list[dict[str, Any]], labels: np.ndarray, cfg: MapConfig
) -> tuple[pd.DataFrame, np.ndarray, float | None]:
    """Per-cluster quality inside its own unit (a cluster's modularity terms are normalised by its unit's
    volume, on the pruned graph and on the full projection), the unit of each cluster, and the full
    projection's modularity over all units (None when a unit's full projection could not be formed); adds
    each unit's totals to its summary."""
    n_clusters = int(labels.max()) + 1
    names = ("volume", "within", "cut", "ncut", "modularity_pruned", "modularity_full")
    columns = {name: np.zeros(n_clusters) for name in names}
    within_full, volume_full = np.zeros(n_clusters), np.zeros(n_clusters)
    unit_of_cluster = np.zeros(n_clusters, np.int64)
    full_known = True
    for i, (graph, rows, info) in enumerate(zip(graphs, units, infos, strict=True)):
        present, local = np.unique(labels[rows], return_inverse=True)
        table = partition_table(*cluster_weights(graph, local), cfg.resolution)
        table = table.rename(columns={"modularity": "modularity_pruned"})
        full = info.pop("_full")
        if full is not None:
            within_full[present], volume_full[present] = cluster_weights(full, local)
            table["modularity_full"] = partition_table(
                within_full[present], volume_full[present], cfg.resolution
            )["modularity"].to_numpy()
        else:
            full_known = False
            table["modularity_full"] = np.nan
        for name, values in columns.items():
            values[present] = table[name].to_numpy()
        unit_of_cluster[present] = i
        has_edges = info["neuron_edges"] != 0
        info |= {
            "clusters": len(present),
            "modularity_full": float(table["modularity_full"].sum())
            if has_edges and full is not None
            else None,
            "modularity_pruned": float(table["modularity_pruned"].sum()) if has_edges else None,
            "ncut": float(table["ncut"].sum()),
        }
    # Over all units together (within-layer: the block-diagonal graph of the layers), as modularity_pruned.
    whole = (
        float(partition_table(within_full, volume_full, cfg.resolution)["modularity"].sum())
        if full_known
        else None
    )
    return pd.DataFrame(columns), unit_of_cluster, whole


def _describe(
    matrix: sp.csr_array,
    tokens: pd.DataFrame,
    labels: np.ndarray,
    unit_of_cluster: np.ndarray,
    cfg: MapConfig,
) -> tuple[np.ndarray, sp.csr_array, pd.DataFrame, pd.DataFrame]:
    """Merged labels, cluster x token magnitudes, tokens per cluster (raw and merged) and token groups."""
    magnitude_matrix = abs(matrix)
    magnitude = cluster_token_matrix(magnitude_matrix, labels)
    merged = merge_clusters(magnitude, labels, unit_of_cluster, cfg.merge_threshold)
    cluster_tokens = pd.concat(
        [
            token_table(
                cluster_token_matrix(matrix, part),
                cluster_token_matrix(magnitude_matrix, part),
                tokens,
                cfg.top_tokens,
                name,
            )
            for name, part in [("cluster", labels), ("merged", merged)]
        ],
        ignore_index=True,
    )
    return merged, magnitude, cluster_tokens, token_groups(magnitude, tokens, cfg.neighbors, cfg.seed)


def _cluster_table(
    labels: np.ndarray,
    merged: np.ndarray,
    layers: np.ndarray,
    n_layers: int,
    quality: pd.DataFrame,
    unit_of_cluster: np.ndarray,
    infos: list[dict[str, Any]],
    magnitude: sp.csr_array,
    cluster_tokens: pd.DataFrame,
) -> pd.DataFrame:
    n_clusters = len(quality)
    hist = np.zeros((n_clusters, n_layers), np.int64)
    np.add.at(hist, (labels, layers), 1)
    top = cluster_tokens[(cluster_tokens["partition"] == "cluster") & (cluster_tokens["rank"] < SUMMARY_TOP)]
    top_tokens = top.groupby("cluster")["token"].agg(list).reindex(range(n_clusters))
    clusters = pd.DataFrame(
        {
            "cluster": np.arange(n_clusters, dtype=np.int32),
            "merged_cluster": merged[np.unique(labels, return_index=True)[1]].astype(np.int32),
            "layer": pd.array([infos[u]["layer"] for u in unit_of_cluster], dtype="Int32"),
            "size": np.bincount(labels).astype(np.int64),
            "main_layer": hist.argmax(axis=1).astype(np.int32),
            "layer_hist": list(hist),
        }
    )
    return pd.concat([clusters, quality], axis=1).assign(
        token_weight=np.asarray(magnitude.sum(axis=1)).ravel(),
        top_tokens=[t if isinstance(t, list) else [] for t in top_tokens],
    )


def _neuron_table(
    neurons: pd.DataFrame,
    d_mlp: int,
    labels: np.ndarray,
    merged: np.ndarray,
    graphs: list[Graph],
    matrix: sp.csr_array,
    generic: pd.DataFrame,
) -> pd.DataFrame:
    degree = [np.diff(g.indptr) if hasattr(g, "indptr") else [None] * g.shape[0] for g in graphs]
    flags = neurons.merge(generic, on=["layer", "neuron"], how="left", validate="one_to_one")
    return neurons.assign(
        global_id=neurons["layer"].to_numpy(np.int64) * d_mlp + neurons["neuron"].to_numpy(np.int64),
        cluster=labels,
        merged_cluster=merged,
        degree=pd.array([x for part in degree for x in part], dtype="Int64"),
        strength=np.concatenate([degrees(g) for g in graphs]),
        n_tokens=np.diff(matrix.indptr).astype(np.int64),
        token_weight=np.asarray(abs(matrix).sum(axis=1)).ravel(),
        contexts=flags["contexts"].to_numpy(np.int64),
        generic=flags["generic"].to_numpy(bool),
    )


def _projection_table(whole: sp.csr_array, global_id: np.ndarray) -> pd.DataFrame:
    upper = sp.triu(whole, k=1).tocoo()
    order = np.lexsort((upper.col, upper.row))
    return pd.DataFrame(
        {
            "source": global_id[upper.row[order]],
            "target": global_id[upper.col[order]],
            "weight": upper.data[order],
        }
    )


def _summary(
    cfg: MapConfig,
    manifest: dict[str, Any],
    counts: dict[str, int | None],
    clusters: pd.DataFrame,
    neurons: pd.DataFrame,
    infos: list[dict[str, Any]],
    modularity_full: float | None,
    meaning: dict[str, Any],
) -> dict[str, Any]:
    def layer_counts(hist: np.ndarray) -> dict[str, int]:
        return {str(layer): int(count) for layer, count in enumerate(hist) if count}

    merged_sizes = clusters.groupby("merged_cluster")["cluster"].agg(list)
    per_layer = neurons.groupby("layer")["cluster"].nunique()
    return {
        "method": cfg.method,
        "projection": cfg.projection,
        "scope": cfg.scope,
        "params": cfg.record(),
        "model": {
            k: (manifest.get("model") or {}).get(k) for k in ("spec", "n_layers", "d_mlp", "weights_hash")
        },
        "counts": counts,
        # Over all units together (for within-layer: the block-diagonal graph of the layers). Pruned: the
        # graph that was clustered; full: the unpruned projection of the same factor, same partition.
        "modularity_full": modularity_full,
        "modularity_pruned": float(
            partition_table(clusters["within"].to_numpy(), clusters["volume"].to_numpy(), cfg.resolution)[
                "modularity"
            ].sum()
        ),
        "ncut": float(clusters["ncut"].sum()),
        "clusterability": _clusterability_summary(infos, cfg),
        **meaning,
        "clusters_per_layer": {str(layer): int(count) for layer, count in per_layer.items()},
        "layer_histograms": {
            str(row.cluster): layer_counts(row.layer_hist)
            for row in clusters.itertuples()
            if row.size > 1 and cfg.scope == "cross-layer"
        },
        "units": infos,
        "merges": [
            {"merged_cluster": int(m), "clusters": members}
            for m, members in merged_sizes.items()
            if len(members) > 1
        ],
        "largest_clusters": [
            {
                "cluster": int(row.cluster),
                "size": int(row.size),
                "layers": layer_counts(row.layer_hist),
                "top_tokens": row.top_tokens,
                "coherence": row.coherence,
                "coherence_p": row.coherence_p,
                "coherent": bool(row.coherent),
            }
            for row in clusters.head(SUMMARY_TOP).itertuples()
        ],
        "notes": [],
    }


def _clusterability_summary(infos: list[dict[str, Any]], cfg: MapConfig) -> dict[str, Any] | None:
    """The summary's one clusterability entry: the unit's test (cross-layer), or per layer (within-layer, where
    p, z and k are per layer and the top level has none of them)."""
    tested = [info for info in infos if info.get("test")]
    if not tested:
        return None
    heads = [info["test"] for info in tested]
    if cfg.scope == "cross-layer":
        return {k: heads[0][k] for k in ("p", "z", "null", "samples", "k", "selection", "p_floor", "cost")}
    return {
        "p": None,
        "z": None,
        "k": None,
        "null": heads[0]["null"],
        "samples": heads[0]["samples"],
        "selection": heads[0]["selection"].split(":")[0] + ": per layer, see units",
        "p_floor": heads[0]["p_floor"],
        "cost": {
            name: sum(h["cost"][name] for h in heads) for name in ("selection_networks", "test_networks")
        },
        "layers": [
            {"layer": info["layer"], "p": h["p"], "z": h["z"], "k": h["k"]}
            for info, h in zip(tested, heads, strict=True)
        ],
    }


def _meaning(
    rd: RunDir,
    manifest: dict[str, Any],
    cfg: MapConfig,
    tokens: pd.DataFrame,
    cluster_tokens: pd.DataFrame,
    neurons: pd.DataFrame,
    labels: np.ndarray,
    n_clusters: int,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Coherence per cluster (a frame aligned with the clusters) and the summary's ``coherence`` and ``groups``
    entries (see :mod:`neuronmap.graph.meaning`)."""
    top = cluster_tokens[
        (cluster_tokens["partition"] == "cluster")
        & (cluster_tokens["rank"] < COHERENCE_TOKENS)
        & (cluster_tokens["score"] > 0)  # over-represented in the cluster (lift > 1)
    ]
    column = pd.Index(tokens["token_id"].to_numpy()).get_indexer(top["token_id"])
    per_cluster = [np.zeros(0, np.int64)] * n_clusters
    for c, cols in pd.Series(column).groupby(top["cluster"].to_numpy()):
        per_cluster[int(c)] = cols.to_numpy(np.int64)
    contexts = rd.contexts()
    embeddings, source = load_embeddings(
        manifest, tokens["token_id"].to_numpy(), cfg.token_field, cfg.embeddings
    )
    if embeddings is None:
        coherence = pd.DataFrame(
            {
                "coherence": np.full(n_clusters, np.nan),
                "coherence_p_raw": np.nan,
                "coherence_p": np.nan,
                "coherent": False,
            }
        )
    else:
        frequency = token_frequency(contexts, tokens["token_id"].to_numpy(), cfg.token_field)
        coherence = cluster_coherence(per_cluster, embeddings, COHERENCE_DRAWS, cfg.seed, frequency)
    sizes = np.bincount(labels, minlength=n_clusters)
    passing = np.flatnonzero(coherence["coherent"].to_numpy())
    tested = int(coherence["coherence_p"].notna().sum())
    entry = {
        "source": source if embeddings is not None else None,
        "note": None if embeddings is not None else f"coherence not computed: {source}",
        "tokens": COHERENCE_TOKENS,
        "draws": COHERENCE_DRAWS,
        "p_floor": 1 / (COHERENCE_DRAWS + 1),
        "alpha": COHERENCE_ALPHA,
        "null": "frequency-matched: each top token replaced by a random run token of its frequency bin "
        f"(up to {FREQUENCY_BINS} equal-count bins of the run's tokens by the contexts that carry them, "
        f"at least {MIN_BIN_TOKENS} tokens a bin)",
        "frequency_bins": n_frequency_bins(len(tokens)) if embeddings is not None else None,
        "adjustment": "Benjamini-Hochberg over the tested clusters (scipy.stats.false_discovery_control)",
        "tested": tested,
        "coherent": [int(c) for c in passing],
        "coherent_neurons": int(sizes[passing].sum()),
        "coherent_neuron_share": float(sizes[passing].sum() / max(len(labels), 1)),
    }
    _, codes = group_columns(contexts)
    groups: dict[str, Any] = {}
    if codes:
        dominant = dominant_clusters(rd.scores(), contexts, neurons, labels, cfg.edge_score)
        blocks = contexts["doc_id"].to_numpy(np.int64) if "doc_id" in contexts else None
        groups = group_alignment(dominant, codes, GROUP_PERMUTATIONS, cfg.seed, blocks)
    return coherence, {"coherence": entry, "groups": groups}


def _edges(rd: RunDir, cfg: MapConfig) -> tuple[pd.DataFrame, int, int]:
    """The edges table and the numbers of contexts and scores; the trace's tables are freed on return (on a
    100k-context trace they weigh as much as the projection)."""
    contexts, scores = rd.contexts(), rd.scores()
    bad = int((~np.isfinite(scores["score"].to_numpy(np.float64))).sum()) if "score" in scores else 0
    if bad:
        are = "scores are" if bad > 1 else "score is"
        raise NeuronmapError(
            f"{rd.path / 'scores.parquet'}: {bad} {are} NaN or infinite; trace the run again"
        )
    edges = build_edges(
        contexts,
        scores,
        edge_score=cfg.edge_score,
        min_edge=cfg.min_edge,
        top_k=cfg.top_k,
        token_field=cfg.token_field,
    )
    return edges, len(contexts), len(scores)


def _compute(
    rd: RunDir, manifest: dict[str, Any], cfg: MapConfig, progress: bool, runner: BlockRunner | None = None
) -> tuple[MapResult, sp.csr_array | None]:
    edges, n_contexts, n_scores = _edges(rd, cfg)
    n_layers, d_mlp = _model_shape(manifest, edges)
    generic = generic_neurons(edges, n_contexts)
    flagged = generic[generic["generic"]]
    if cfg.drop_generic and len(flagged):
        key = pd.MultiIndex.from_frame(edges[["layer", "neuron"]])
        edges = edges[~key.isin(pd.MultiIndex.from_frame(flagged[["layer", "neuron"]]))]
        edges = edges.reset_index(drop=True)
        if edges.empty:
            raise NeuronmapError(
                "--drop-generic: every neuron of the trace is generic; nothing is left to map"
            )
    matrix, neurons, tokens = bipartite_matrix(edges)
    layers = neurons["layer"].to_numpy(np.int64)

    units, graphs, infos, labels = _cluster(matrix, layers, cfg, progress, runner)
    null_seconds = sum(info.pop("_seconds", 0.0) for info in infos)
    quality, unit_of_cluster, modularity_full = _cluster_quality(units, graphs, infos, labels, cfg)
    merged, magnitude, cluster_tokens, groups = _describe(matrix, tokens, labels, unit_of_cluster, cfg)
    clusters = _cluster_table(
        labels, merged, layers, n_layers, quality, unit_of_cluster, infos, magnitude, cluster_tokens
    )
    coherence, meaning = _meaning(rd, manifest, cfg, tokens, cluster_tokens, neurons, labels, len(clusters))
    clusters = pd.concat([clusters, coherence], axis=1)
    meaning["generic"] = {
        "rule": GENERIC_RULE,
        "dropped": bool(cfg.drop_generic),
        "neurons": [
            {
                "layer": int(r.layer),
                "neuron": int(r.neuron),
                "contexts": int(r.contexts),
                "tokens": int(r.n_tokens),
            }
            for r in flagged.itertuples()
        ],
    }
    neuron_table = _neuron_table(neurons, d_mlp, labels, merged, graphs, matrix, generic)
    materialised = all(not isinstance(g, GramOperator) for g in graphs)
    whole = sp.block_diag(graphs, format="csr") if materialised else None
    counts = {
        "contexts": n_contexts,
        "scores": n_scores,
        "edges": len(edges),
        "neurons": len(neurons),
        "tokens": len(tokens),
        "neuron_edges": None if whole is None else int(whole.nnz // 2),
        "clusters": len(clusters),
        "merged_clusters": int(merged.max()) + 1,
        "singletons": int((clusters["size"] == 1).sum()),
        "token_groups": int(groups["group"].max()) + 1,
    }
    summary = _summary(cfg, manifest, counts, clusters, neuron_table, infos, modularity_full, meaning)
    test = summary["clusterability"]
    if test is not None and test["p_floor"] is not None and test["p_floor"] > P_FLOOR_TARGET:
        # Not in "notes" (which say what was skipped): a property of the test, next to it.
        test["p_floor_note"] = (
            f"with {test['samples']} samples per null, p cannot go below 1/{test['samples'] + 1} = "
            f"{test['p_floor']:.3g}; --null-samples {math.ceil(1 / P_FLOOR_TARGET) - 1} or more can reach "
            f"p <= {P_FLOOR_TARGET}"
        )
    if not materialised:
        summary["notes"].append("the exact projection was not materialised: no projection table, no exports")
    result = MapResult(
        path=rd.path / GRAPH,
        summary=summary,
        edges=edges,
        neurons=neuron_table,
        clusters=clusters,
        cluster_tokens=cluster_tokens,
        token_groups=groups,
        projection=None if whole is None else _projection_table(whole, neuron_table["global_id"].to_numpy()),
        null_seconds=null_seconds,
    )
    return result, whole


def _write(result: MapResult, whole: sp.csr_array | None, cfg: MapConfig) -> None:
    """Write every output into a temporary folder, then swap it in for ``graph/``."""
    final = result.path
    tmp = final.with_name(f".graph.tmp-{os.getpid()}")
    # Folders a killed map left behind (the run's lock is ours, so no other map is writing them).
    for stale in [*final.parent.glob(".graph.tmp-*"), *final.parent.glob(".graph.old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        names = []
        for name in TABLES:
            table = getattr(result, name)
            if table is not None:
                atomic_write_parquet(table, tmp / f"{name}.parquet")
                names.append(f"{name}.parquet")
        if whole is not None and whole.nnz // 2 <= cfg.export_max_edges:
            names += write_exports(whole, result.neurons, tmp, cfg.export)
        elif cfg.export and whole is not None:
            result.summary["notes"].append(
                f"exports skipped: {whole.nnz // 2:,} edges > --export-max-edges {cfg.export_max_edges:,}"
            )
        result.summary["outputs"] = sorted([*names, "summary.json"])
        result.summary = _json_safe(result.summary)
        atomic_write_json(result.summary, tmp / "summary.json")
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):  # a full disk while writing an export
            raise write_error(final, exc) from exc
        raise
    old = final.with_name(f".graph.old-{os.getpid()}")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def map_run(
    run: str | Path | RunDir,
    *,
    force: bool = False,
    progress: bool = False,
    backend: str = "local",
    address: str | None = None,
    workers: int = 2,
    **params: Any,
) -> MapResult:
    """Map a traced run: build the graphs, find communities, describe them with tokens; write ``RUN/graph/``.

    ``params`` are the fields of :class:`MapConfig`. If the run already has a complete map with the same
    parameters from the same trace, it is loaded, not recomputed; a map with other parameters is replaced only
    with ``force=True``. ``progress`` draws progress bars on a terminal.

    ``backend="ray"`` runs the row blocks of the projections as Ray tasks (:mod:`neuronmap.graph.ray_blocks`):
    on the cluster at ``address``, or on a local one with ``workers`` CPUs. The map is the same as the local
    backend's, so the backend is not one of the map's parameters.
    """
    cfg = MapConfig(**params)
    _choice("backend", backend, BACKENDS)
    runner = None
    if backend == "ray":
        from neuronmap.graph.ray_blocks import RayBlocks

        runner = RayBlocks(address, workers)  # checks that Ray is installed
    rd = run if isinstance(run, RunDir) else RunDir(run)
    manifest = rd.manifest()
    trace = rd.require_stage("trace")
    with stage(rd, "map", cfg.record()) as st:
        fingerprint, previous = _fingerprint(trace), st.previous or {}
        if st.complete and not force:
            if not st.changes() and previous.get("trace") == fingerprint:
                result = MapResult.load(rd)
                result.reused = True
                result.null_seconds = (previous.get("timing") or {}).get("null_seconds")
                return result
            what = "other parameters" if st.changes() else "an older trace"
            if not set(st.params) <= set(previous.get("params") or st.params):
                what = "an older neuronmap, without options (and outputs) this one has"
            raise NeuronmapError(f"{rd.path}: already mapped with {what}; pass --force to replace the map")
        st.wrote(GRAPH)
        st.start(trace=fingerprint)
        if runner is not None:
            with runner:
                result, whole = _compute(rd, manifest, cfg, progress, runner)
        else:
            result, whole = _compute(rd, manifest, cfg, progress)
        _write(result, whole, cfg)
        # wall-clock, so under "timing" (as trace keeps it): the one field comparisons of runs leave out
        st.finish(timing={"null_seconds": round(result.null_seconds or 0.0, 2)})
    return result
