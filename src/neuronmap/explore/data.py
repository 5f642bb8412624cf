"""What the page and the figures show, computed from a mapped run directory's tables (no model, no torch).

``load_view(run)`` reads ``contexts.parquet``, ``scores.parquet`` and ``graph/``: the map's labels, cluster sizes,
layer histograms and merges (``neurons.parquet``, ``clusters.parquet``) and its edges (``edges.parquet``). From
them it derives, for each partition (the clusters as found, and as merged):

- a 2-D position per cluster (``layout.embed_profiles`` of the clusters' token profiles, their edges' |weight|
  summed; a merged cluster sits at the size-weighted centre of its parts, so that switching partitions does not
  move the map);
- the *mass* of each (layer, cluster) cell: the sum of the run's scores of its neurons, made non-negative as the
  map weighs them (``graph.meaning.graph_scores``: ``positive``: max(score, 0); ``abs`` and ``signed``:
  |score|), over all contexts and over the contexts of each group value. The group x cluster matrix is its sum
  over layers;
- token specificity: the KL divergence (bits) of a cluster's token distribution from the overall one, the
  quantity whose terms rank a cluster's tokens (graph.tokens).

Context groups are the columns of ``contexts.parquet`` beyond the trace's own (relation, topic, pos, sense, ...)
with at most ``MAX_GROUP_VALUES`` distinct values and fewer than half as many values as contexts (a column
that names each context, such as an id or a title, groups nothing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from neuronmap.errors import NeuronmapError
from neuronmap.explore.layout import embed_profiles
from neuronmap.graph.api import MapResult
from neuronmap.graph.bipartite import bipartite_matrix
from neuronmap.graph.meaning import (  # noqa: F401 (MAX_GROUP_VALUES, TRACE_COLUMNS re-exported)
    MAX_GROUP_VALUES,
    TRACE_COLUMNS,
    graph_scores,
    group_columns,
)
from neuronmap.graph.tokens import cluster_token_matrix
from neuronmap.neurons.names import EXAMPLES as NEURON_EXAMPLES
from neuronmap.neurons.names import HISTOGRAMS as NEURON_HIST
from neuronmap.neurons.names import LOGITS as NEURON_LOGITS
from neuronmap.rundir import DOCUMENTS, RunDir, read_parquet

MIN_SPECIFIC_SIZE = 5  # smaller clusters are trivially specific; the summary ranks the others


@dataclass
class Partition:
    """One partition of the neurons into clusters, with everything drawn per cluster."""

    name: str
    labels: np.ndarray  # cluster of each neuron row
    size: np.ndarray
    layer_hist: np.ndarray  # (clusters, n_layers)
    profiles: sp.csr_array  # (clusters, tokens): |edge weight| summed
    xy: np.ndarray  # (clusters, 2)
    specificity: np.ndarray  # KL bits of the token distribution from the overall one
    members: list[list[int]] = field(default_factory=list)  # merged: the clusters each one joins

    @property
    def n(self) -> int:
        return len(self.size)


@dataclass
class Dashboards:
    """The neuron dashboards ``neuronmap neurons`` wrote into ``graph/`` (each table None when absent).

    The examples table can be large (8 rows with token windows per neuron), so it is read on demand, for the
    neurons asked for."""

    logits: pd.DataFrame | None
    histograms: pd.DataFrame | None
    examples_path: Path | None

    @classmethod
    def read(cls, graph: Path) -> Dashboards | None:
        paths = [graph / name for name in (NEURON_LOGITS, NEURON_HIST, NEURON_EXAMPLES)]
        if not any(p.is_file() for p in paths):
            return None
        logits, hist, examples = paths
        return cls(
            read_parquet(logits) if logits.is_file() else None,
            read_parquet(hist) if hist.is_file() else None,
            examples if examples.is_file() else None,
        )

    def examples(self, layers: np.ndarray, neurons: np.ndarray) -> pd.DataFrame | None:
        """The examples of the given (layer, neuron) pairs."""
        if self.examples_path is None:
            return None
        import pyarrow.parquet as pq

        table = pq.read_table(self.examples_path)
        span = int(max(np.max(neurons, initial=0), np.max(table["neuron"].to_numpy(), initial=0))) + 1
        wanted = np.asarray(layers, np.int64) * span + np.asarray(neurons, np.int64)
        key = table["layer"].to_numpy().astype(np.int64) * span + table["neuron"].to_numpy().astype(np.int64)
        return table.filter(np.isin(key, wanted)).to_pandas()


@dataclass
class RunView:
    """The tables of a mapped run and what explore derives from them."""

    path: Path
    manifest: dict[str, Any]
    map: MapResult
    contexts: pd.DataFrame
    scores: pd.DataFrame  # with ``row`` (neuron row in map.neurons) and ``magnitude``; graph neurons only
    tokens: pd.DataFrame  # token_id, token: the columns of ``matrix``
    matrix: sp.csr_array  # neurons x tokens edge weights
    n_layers: int
    groups: dict[str, list[str]]  # group column -> its values, most frequent first
    codes: dict[str, np.ndarray]  # group column -> value index of each context row (-1: none)
    context_token: np.ndarray  # token column of each context row (-1: not in the graph)
    partitions: dict[str, Partition]
    documents: pd.Series | None = (
        None  # each-token runs: document text by doc_id (events keep none of their own)
    )
    dashboards: Dashboards | None = None  # neuronmap neurons: output tokens, examples, activation histograms

    def context_texts(self, rows: np.ndarray) -> tuple[list[str], list[str]]:
        """(text before the target, target) of context rows; an event's come from its document, the target as the
        document spells it."""
        ctx = self.contexts.iloc[rows]
        if self.documents is None:
            return ctx["text"].tolist(), ctx["target"].astype(str).tolist()
        texts = self.documents.loc[ctx["doc_id"]].to_numpy()
        starts, ends = ctx["char_start"].to_numpy(), ctx["char_end"].to_numpy()
        return [t[:s] for t, s in zip(texts, starts, strict=True)], [
            t[s:e] for t, s, e in zip(texts, starts, ends, strict=True)
        ]

    @property
    def summary(self) -> dict[str, Any]:
        return self.map.summary

    def mass(self, partition: str, column: str | None = None) -> pd.DataFrame:
        """Score mass per (value, layer, cluster) for a group column, or per (layer, cluster) for all contexts."""
        labels = self.partitions[partition].labels
        frame = pd.DataFrame(
            {
                "layer": self.map.neurons["layer"].to_numpy()[self.scores["row"].to_numpy()],
                "cluster": labels[self.scores["row"].to_numpy()],
                "mass": self.scores["magnitude"].to_numpy(),
            }
        )
        keys = ["layer", "cluster"]
        if column is not None:
            frame["value"] = self.codes[column][self.scores["ctx"].to_numpy()]
            frame = frame[frame["value"] >= 0]
            keys = ["value", *keys]
        table = frame.groupby(keys, sort=True)["mass"].sum().reset_index()
        return table[table["mass"] > 0].reset_index(drop=True)

    def group_matrix(self, partition: str, column: str) -> np.ndarray:
        """(values, clusters): each group value's share of its mass per cluster (rows sum to 1)."""
        table = self.mass(partition, column)
        matrix = np.zeros((len(self.groups[column]), self.partitions[partition].n))
        np.add.at(matrix, (table["value"].to_numpy(), table["cluster"].to_numpy()), table["mass"].to_numpy())
        totals = matrix.sum(axis=1, keepdims=True)
        return matrix / np.where(totals > 0, totals, 1.0)

    def group_frame(self, partition: str, column: str) -> pd.DataFrame:
        """``group_matrix`` labelled: index the group's values (most frequent first, as strings), named after the
        column; columns the cluster ids of the partition, named after it (``cluster`` or ``merged``)."""
        if column not in self.groups:
            raise NeuronmapError(
                f"{self.path}: '{column}' is not a context group (groups: {', '.join(self.groups) or 'none'})"
            )
        if partition not in self.partitions:
            raise NeuronmapError(f"partition must be one of {', '.join(self.partitions)} (got {partition!r})")
        return pd.DataFrame(
            self.group_matrix(partition, column),
            index=pd.Index(self.groups[column], name=column),
            columns=pd.RangeIndex(self.partitions[partition].n, name=partition),
        )


def _group_columns(contexts: pd.DataFrame) -> tuple[dict[str, list[str]], dict[str, np.ndarray]]:
    # One rule for the map's group statistics (summary.json "groups") and the page's group views.
    return group_columns(contexts)


def _context_tokens(contexts: pd.DataFrame, tokens: pd.DataFrame, token_field: str) -> np.ndarray:
    """The graph token (a column of the bipartite matrix) each context links its neurons to, or -1."""
    if token_field == "input":
        ids = [int(i[p]) for i, p in zip(contexts["input_ids"], contexts["position"], strict=True)]
    else:
        ids = [int(t[0]) if len(t) else -1 for t in contexts["target_ids"]]
    known = tokens["token_id"].to_numpy()
    where = np.searchsorted(known, ids)
    found = (where < len(known)) & (known[np.minimum(where, len(known) - 1)] == ids)
    return np.where(found, where, -1)


def _specificity(profiles: sp.csr_array) -> np.ndarray:
    totals = np.asarray(profiles.sum(axis=1)).ravel()
    overall = np.asarray(profiles.sum(axis=0)).ravel() / max(profiles.sum(), 1e-300)
    coo = sp.coo_array(profiles)
    keep = coo.data > 0
    row, col, value = coo.row[keep], coo.col[keep], coo.data[keep]
    share = value / totals[row]
    return np.bincount(row, share * np.log2(share / overall[col]), minlength=profiles.shape[0])


def _partitions(
    clusters: pd.DataFrame, neurons: pd.DataFrame, magnitude: sp.csr_array, seed: int
) -> dict[str, Partition]:
    """The found and the merged partition. Labels, sizes, layer histograms and the clusters each merged one
    joins are the map's (neurons.parquet, clusters.parquet); a merged cluster's size and histogram are its
    clusters' summed. Profiles sum ``magnitude`` (|edge weight|, neurons x tokens) per cluster."""
    size = clusters["size"].to_numpy(np.int64)
    hist = np.stack(clusters["layer_hist"].to_numpy()).astype(np.int64)
    labels = neurons["cluster"].to_numpy(np.int64)
    profiles = cluster_token_matrix(magnitude, labels)
    found = Partition(
        "cluster",
        labels,
        size,
        hist,
        profiles,
        embed_profiles(profiles, random_state=seed),
        _specificity(profiles),
    )
    parent = clusters["merged_cluster"].to_numpy(np.int64)
    n = int(parent.max()) + 1
    members = [np.flatnonzero(parent == m).tolist() for m in range(n)]
    merged_size, merged_hist = np.zeros(n, np.int64), np.zeros((n, hist.shape[1]), np.int64)
    np.add.at(merged_size, parent, size)
    np.add.at(merged_hist, parent, hist)
    merged_profiles = cluster_token_matrix(magnitude, neurons["merged_cluster"].to_numpy(np.int64))
    # At the size-weighted centre of the clusters it joins, so that switching partitions does not move the map.
    weights = size.astype(np.float64)
    xy = np.array([np.average(found.xy[m], axis=0, weights=weights[m]) for m in members]).reshape(n, 2)
    merged = Partition(
        "merged",
        neurons["merged_cluster"].to_numpy(np.int64),
        merged_size,
        merged_hist,
        merged_profiles,
        xy,
        _specificity(merged_profiles),
        members,
    )
    return {"cluster": found, "merged": merged}


def load_view(run: str | Path | RunDir) -> RunView:
    """Read a mapped run and derive the view; a run without a complete map is a user error."""
    rd = run if isinstance(run, RunDir) else RunDir(run)
    manifest = rd.manifest()
    rd.require_stage("trace")
    if (rd.stage("map") or {}).get("status") != "complete":
        raise NeuronmapError(f"{rd.path}: has no map yet; run `neuronmap map {rd.path}` first")
    mapped = MapResult.load(rd)
    neurons = mapped.neurons
    matrix, rows, tokens = bipartite_matrix(mapped.edges)
    if not (
        len(rows) == len(neurons)
        and (rows["layer"].to_numpy() == neurons["layer"].to_numpy()).all()
        and (rows["neuron"].to_numpy() == neurons["neuron"].to_numpy()).all()
    ):
        raise NeuronmapError(
            f"{rd.path / 'graph'}: edges.parquet and neurons.parquet disagree; map the run again"
        )
    contexts = rd.contexts()
    n_layers = int((manifest.get("model") or {}).get("n_layers") or int(neurons["layer"].max()) + 1)
    params = mapped.summary.get("params", {})

    scores = graph_scores(rd.scores(), neurons, contexts, params.get("edge_score", "positive"))
    groups, codes = _group_columns(contexts)
    return RunView(
        path=rd.path,
        manifest=manifest,
        map=mapped,
        contexts=contexts,
        scores=scores,
        tokens=tokens,
        matrix=matrix,
        n_layers=n_layers,
        groups=groups,
        codes=codes,
        context_token=_context_tokens(contexts, tokens, params.get("token_field", "target")),
        partitions=_partitions(mapped.clusters, neurons, abs(matrix), int(params.get("seed", 0))),
        documents=read_parquet(rd.path / DOCUMENTS, columns=["doc_id", "text"]).set_index("doc_id")["text"]
        if (rd.path / DOCUMENTS).is_file()
        else None,
        dashboards=Dashboards.read(mapped.path),
    )


def top_specific(view: RunView, n: int = 3, partition: str = "cluster") -> list[dict[str, Any]]:
    """The ``n`` most token-specific clusters of at least ``MIN_SPECIFIC_SIZE`` neurons, with their top tokens."""
    part = view.partitions[partition]
    eligible = np.flatnonzero(part.size >= MIN_SPECIFIC_SIZE)
    chosen = eligible[np.argsort(-part.specificity[eligible], kind="stable")[:n]]
    ct = view.map.cluster_tokens
    ct = ct[ct["partition"] == partition]
    return [
        {
            "cluster": int(c),
            "size": int(part.size[c]),
            "bits": float(part.specificity[c]),
            "tokens": ct[ct["cluster"] == c].sort_values("rank")["token"].head(5).tolist(),
        }
        for c in chosen
    ]


def clusterability_line(summary: dict[str, Any]) -> str:
    """One line on the clusterability test of each scope unit, as the CLI and the page say it: against the
    degree-preserving ``swaps`` null (``pairs`` for maps made before it existed), the one that neuron breadth
    alone cannot fail."""
    tests = {}
    for unit in summary.get("units", []):
        found = unit.get("clusterability") or {}
        kind = "swaps" if "swaps" in found else "pairs"
        if (found.get(kind) or {}).get("p") is not None:
            tests["all layers" if unit.get("layer") is None else f"layer {unit['layer']}"] = (
                kind,
                found[kind],
            )
    if not tests:
        return "not tested (--null-samples 0)"
    head = f"({' / '.join(sorted({kind for kind, _ in tests.values()}))} null): "
    if len(tests) > 4:
        ps = sorted(test["p"] for _, test in tests.values())
        return (
            head
            + f"{len(ps)} layers tested: p from {ps[0]:.3g} to {ps[-1]:.3g} (median {ps[len(ps) // 2]:.3g})"
        )
    return head + "; ".join(
        f"{where}: p = {test['p']:.3g}" + ("" if test.get("z") is None else f", z = {test['z']:.1f}")
        for where, (_, test) in tests.items()
    )


def target_check(view: RunView) -> dict[str, Any] | None:
    """How many of the run's targets the model does not predict top-1, and their median p
    (``trace.targets.target_summary``, from ``contexts.parquet``'s ``known`` and ``p_target``; so also for runs
    traced before the trace recorded it). None when the columns are absent."""
    from neuronmap.trace.targets import target_line, target_summary

    if not {"known", "p_target"} <= set(view.contexts.columns):
        return None
    found = target_summary(view.contexts["known"].to_numpy(), view.contexts["p_target"].to_numpy())
    events = view.documents is not None
    line = target_line(found, "events" if events else "contexts", hint=None)
    return {**found, "line": line}
