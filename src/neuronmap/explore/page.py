"""The interactive page: one self-contained HTML file, ``RUN/explorer.html``.

The page inlines plotly.js as the ``plotly`` wheel ships it, the small glue script that links the views
(``static/explorer.js``) and the run's data as JSON. Safety: the data sit in a ``type="application/json"``
script with ``<``, ``>`` and ``&`` written as ``\\u003c``-style escapes, so no text from a model or a user can
close the element; the glue script puts text into the page only as text nodes, and into plotly labels only
HTML-escaped; a Content-Security-Policy allows the two inline scripts by hash and nothing else (no network, no
inline event handlers).
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from neuronmap import __version__
from neuronmap.explore.data import (
    Partition,
    RunView,
    clusterability_line,
    load_view,
    target_check,
    top_specific,
)
from neuronmap.graph.meaning import GENERIC_RULE
from neuronmap.graph.tokens import cluster_token_matrix
from neuronmap.rundir import PAGE, RunDir, atomic_write_text, record_views

TOP_TOKENS = 30  # tokens per cluster
LAYER_TOKENS = 8  # tokens per (cluster, layer), for the layer filter
TOP_CONTEXTS = 30  # contexts per cluster, filtered by group in the page
NEURON_CONTEXTS = 10
NEURON_TOKENS = 6
TOKEN_CLUSTERS = 8  # search: clusters and neurons listed per token
TOKEN_NEURONS = 8
GROUP_TOKENS = 40  # token groups: tokens listed per group
GROUP_CLUSTERS = 8
HIST_BINS = 12
LIFT_CAP = 10.0  # token bars: share x min(lift, LIFT_CAP) ranks a cluster's tokens (see _ranked_tokens)
TOKEN_WORDS = 3  # whole targets shown beside a first token that stands for them
CONTEXT_CHARS = 240  # the end of each context's text (the part next to its target)
DASHBOARD_NEURONS = 2000  # neurons whose dashboards (examples, output tokens, histogram) the page carries
CAUSAL_FACTS = 200  # facts whose own causal-trace heatmaps the page carries (the average covers all)


def _num(values: Iterable[float]) -> list[float]:
    """Four significant digits: the page shows three, and JSON shrinks by half."""
    return [float(f"{v:.4g}") for v in values]


def _top_rows(keys: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``values`` per key, ordered by key then value descending (ties: index)."""
    order = np.lexsort((-values, keys))
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) if len(order) else order
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return order[rank < k]


def _lists(n: int, keys: np.ndarray, *columns: Iterable[Any]) -> list[list[list[Any]]]:
    """Rows grouped into one list per key 0..n-1, each row a list of the columns' values (keys sorted)."""
    out: list[list[list[Any]]] = [[] for _ in range(n)]
    for key, *row in zip(keys.tolist(), *columns, strict=True):
        out[key].append(row)
    return out


class _Contexts:
    """The contexts the page refers to, numbered as they are first referred to."""

    def __init__(self) -> None:
        self.rows: dict[int, int] = {}

    def refs(self, rows: Iterable[int]) -> list[int]:
        return [self.rows.setdefault(int(r), len(self.rows)) for r in rows]

    def payload(self, view: RunView) -> dict[str, Any]:
        rows = np.fromiter(self.rows, np.int64, len(self.rows))
        ctx = view.contexts.iloc[rows]
        before, targets = view.context_texts(rows)
        texts = [t if len(t) <= CONTEXT_CHARS else "…" + t[-CONTEXT_CHARS:] for t in before]
        return {
            "id": ctx["context_id"].astype(np.int64).tolist(),
            "text": texts,
            "target": targets,
            "exact": view.documents is not None,  # targets as the text spells them: no space to put in
            "p": _num(ctx["p_target"].fillna(0.0)) if "p_target" in ctx else [],
            # whether the model predicts each target top-1 (the page's p filter)
            "known": ctx["known"].fillna(False).astype(bool).tolist() if "known" in ctx else [],
            "codes": {col: view.codes[col][rows].tolist() for col in view.groups},
        }


def _token_cols(view: RunView, token_ids: np.ndarray) -> np.ndarray:
    return np.searchsorted(view.tokens["token_id"].to_numpy(), token_ids)


def _edge_rows(view: RunView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(neuron row, token column, |weight|) of every bipartite edge."""
    coo = sp.coo_array(view.matrix)
    return coo.row.astype(np.int64), coo.col.astype(np.int64), np.abs(coo.data)


def _ranked_tokens(view: RunView, part: Partition) -> dict[str, np.ndarray]:
    """The ``TOP_TOKENS`` tokens of each cluster by the page's rule, ``share x min(lift, LIFT_CAP)`` (ties: token
    order): share of the cluster's weight (|weight|) times its lift, the lift capped so that a token rare in the
    cluster but rarer elsewhere (lift 30, share 0.1%) does not outrank the tokens typical of it, and a token
    under-represented there (lift 0.05) sinks below one merely common (lift 0.5). Sorted by cluster, then rank."""
    coo = sp.coo_array(part.profiles)
    coo.eliminate_zeros()
    cluster, token, value = coo.row.astype(np.int64), coo.col.astype(np.int64), coo.data
    totals = np.asarray(part.profiles.sum(axis=1)).ravel()
    token_share = np.asarray(part.profiles.sum(axis=0)).ravel() / max(float(part.profiles.sum()), 1e-300)
    share = value / totals[cluster]
    lift = share / token_share[token]
    rank = share * np.minimum(lift, LIFT_CAP)
    order = np.lexsort((token, -rank, cluster))
    pos = np.arange(len(order))
    sorted_cluster = cluster[order]
    starts = np.flatnonzero(np.r_[True, sorted_cluster[1:] != sorted_cluster[:-1]]) if len(order) else order
    within = pos - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    pick = order[within < TOP_TOKENS]
    signed = sp.csr_array(cluster_token_matrix(view.matrix, part.labels))  # signed sums, as the map's weight
    return {
        "cluster": cluster[pick],
        "token": token[pick],
        "weight": np.asarray(signed[cluster[pick], token[pick]]).ravel(),
        "lift": lift[pick],
        "share": share[pick],
    }


def _target_words(view: RunView) -> dict[str, list[str]]:
    """The whole targets each graph token stands for where they differ from it (a multi-token target " yen" is
    linked to its first token " y"): token column -> up to ``TOKEN_WORDS`` targets, most frequent first. Empty
    when the map's tokens are input tokens."""
    field = view.summary.get("params", {}).get("token_field", "target")
    if field != "target" or "target" not in view.contexts:
        return {}
    keep = view.context_token >= 0
    targets = view.contexts["target"].astype(str).to_numpy()[keep]
    frame = pd.DataFrame({"t": view.context_token[keep], "w": targets})
    frame["w"] = frame["w"].str.strip()
    names = view.tokens["token"].astype(str).str.strip().to_numpy() if "token" in view.tokens else None
    if names is None or not len(frame):
        return {}
    frame = frame[frame["w"].to_numpy() != names[frame["t"].to_numpy()]]
    counts = frame.groupby(["t", "w"], sort=True).size().reset_index(name="n")
    counts = counts.sort_values(["t", "n", "w"], ascending=[True, False, True], kind="stable")
    out: dict[str, list[str]] = {}
    for t, rows in counts.groupby("t", sort=True):
        out[str(int(t))] = rows["w"].head(TOKEN_WORDS).tolist()
    return out


def _partition_payload(view: RunView, part: Partition, contexts: _Contexts) -> dict[str, Any]:
    labels, n = part.labels, part.n
    ranked = _ranked_tokens(view, part)
    columns = (_num(ranked[k]) for k in ("weight", "lift", "share"))
    tokens = _lists(n, ranked["cluster"], ranked["token"].tolist(), *columns)
    row, col, weight = _edge_rows(view)
    layer = view.map.neurons["layer"].to_numpy(np.int64)[row]
    cell = pd.DataFrame({"c": labels[row], "l": layer, "t": col, "w": weight})
    cell = cell.groupby(["c", "l", "t"], sort=True)["w"].sum().reset_index()
    key = cell["c"].to_numpy() * view.n_layers + cell["l"].to_numpy()
    top = cell.iloc[_top_rows(key, cell["w"].to_numpy(), LAYER_TOKENS)]
    layer_tokens: list[dict[int, list[list[float]]]] = [{} for _ in range(n)]
    for c, lay, t, w in zip(
        top["c"].tolist(), top["l"].tolist(), top["t"].tolist(), _num(top["w"]), strict=True
    ):
        layer_tokens[c].setdefault(lay, []).append([t, w])

    sc = view.scores
    per = pd.DataFrame({"c": labels[sc["row"].to_numpy()], "x": sc["ctx"].to_numpy(), "m": sc["magnitude"]})
    per = per.groupby(["c", "x"], sort=True)["m"].sum().reset_index()
    best = per.iloc[_top_rows(per["c"].to_numpy(), per["m"].to_numpy(), TOP_CONTEXTS)]
    top_contexts = _lists(n, best["c"].to_numpy(), contexts.refs(best["x"]), _num(best["m"]))

    groups = view.map.token_groups
    members = sp.csr_array(
        (
            np.ones(len(groups)),
            (groups["group"].to_numpy(), _token_cols(view, groups["token_id"].to_numpy())),
        ),
        shape=(int(groups["group"].max()) + 1 if len(groups) else 0, len(view.tokens)),
    )
    carried = sp.coo_array(members @ part.profiles.T)
    share = (
        carried.data
        / np.maximum(np.bincount(carried.row, carried.data, minlength=members.shape[0]), 1e-300)[carried.row]
    )
    pick = _top_rows(carried.row.astype(np.int64), share, GROUP_CLUSTERS)
    group_clusters = _lists(
        members.shape[0], carried.row[pick].astype(np.int64), carried.col[pick].tolist(), _num(share[pick])
    )
    coherence: list[float | None] = [None] * n
    coherent: list[bool] = [False] * n
    clusters = view.map.clusters
    if part.name == "cluster" and "coherent" in clusters.columns:  # maps made before coherence have neither
        coherence = [None if v != v else float(f"{v:.4g}") for v in clusters["coherence_p"]]  # NaN: untested
        coherent = [bool(x) for x in clusters["coherent"]]
    return {
        "coherenceQ": coherence,  # BH-adjusted coherence p of each cluster (found partition only)
        "coherent": coherent,
        "verify": _verify_payload(view, n) if part.name == "cluster" else None,
        "size": part.size.tolist(),
        "x": _num(part.xy[:, 0]),
        "y": _num(part.xy[:, 1]),
        "hist": part.layer_hist.tolist(),
        "bits": _num(part.specificity),
        "tokens": tokens,
        "layerTokens": [{str(k): v for k, v in d.items()} for d in layer_tokens],
        "contexts": top_contexts,
        "members": part.members,
        "mass": _mass_payload(view, part.name),
        "tokenGroupClusters": group_clusters,
    }


def _mass_payload(view: RunView, partition: str) -> dict[str, Any]:
    all_ = view.mass(partition)
    out: dict[str, Any] = {"all": {k: all_[c].tolist() for k, c in (("l", "layer"), ("c", "cluster"))}}
    out["all"]["m"] = _num(all_["mass"])
    for column in view.groups:
        table = view.mass(partition, column)
        out[column] = {k: table[c].tolist() for k, c in (("v", "value"), ("l", "layer"), ("c", "cluster"))}
        out[column]["m"] = _num(table["mass"])
    return out


def _neuron_payload(view: RunView, contexts: _Contexts) -> dict[str, Any]:
    neurons = view.map.neurons
    n = len(neurons)
    row, col, weight = _edge_rows(view)
    pick = _top_rows(row, weight, NEURON_TOKENS)
    tokens = _lists(n, row[pick], col[pick].tolist(), _num(weight[pick]))

    sc = view.scores
    srow, score = sc["row"].to_numpy(np.int64), sc["score"].to_numpy()
    pick = _top_rows(srow, score, NEURON_CONTEXTS)
    top = _lists(n, srow[pick], contexts.refs(sc["ctx"].to_numpy()[pick]), _num(score[pick]))
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)
    np.minimum.at(lo, srow, score)
    np.maximum.at(hi, srow, score)
    lo, hi = np.where(np.isfinite(lo), lo, 0.0), np.where(np.isfinite(hi), hi, 0.0)
    width = np.where(hi > lo, hi - lo, 1.0)
    bins = np.clip(((score - lo[srow]) / width[srow] * HIST_BINS).astype(np.int64), 0, HIST_BINS - 1)
    counts = np.bincount(srow * HIST_BINS + bins, minlength=n * HIST_BINS)
    return {
        "layer": neurons["layer"].tolist(),
        "neuron": neurons["neuron"].tolist(),
        "cluster": neurons["cluster"].tolist(),
        "merged": neurons["merged_cluster"].tolist(),
        "strength": _num(neurons["strength"]),
        "degree": [None if pd.isna(d) else int(d) for d in neurons["degree"]],
        "tokens": tokens,
        "contexts": top,
        "lo": _num(lo),
        "hi": _num(hi),
        "hist": counts.tolist(),
        # the map's generic flag (graph.meaning.GENERIC_RULE); maps made before it have no column
        "generic": neurons["generic"].astype(bool).tolist() if "generic" in neurons else [False] * n,
    }


def _dashboard_payload(view: RunView) -> dict[str, Any] | None:
    """The neuron dashboards of ``neuronmap neurons`` (None when the run has none): per neuron row, its
    promoted and suppressed output tokens, its top-activating examples with per-token activations, and its
    activation histogram; null for neurons the page does not carry. At most ``DASHBOARD_NEURONS`` neurons are
    carried (the generic ones, then the strongest), so a 40,000-neuron map keeps a page of a few MB; the tables
    in ``graph/`` hold them all."""
    dash = view.dashboards
    if dash is None:
        return None
    neurons = view.map.neurons
    n = len(neurons)
    strength = neurons["strength"].fillna(0.0).to_numpy(np.float64)
    generic = neurons["generic"].to_numpy(bool) if "generic" in neurons else np.zeros(n, bool)
    carried = np.sort(np.lexsort((-strength, ~generic))[:DASHBOARD_NEURONS])  # generic first, then strongest
    span = int(neurons["neuron"].max()) + 1 if n else 1
    key = neurons["layer"].to_numpy(np.int64) * span + neurons["neuron"].to_numpy(np.int64)
    row_of = dict(zip(key[carried].tolist(), carried.tolist(), strict=True))
    strings: dict[str, int] = {}

    def ref(token: str) -> int:
        return strings.setdefault(str(token), len(strings))

    def rows(table: pd.DataFrame) -> np.ndarray:
        inside = table["neuron"].to_numpy(np.int64) < span  # a neuron beyond the map's: none of its rows
        k = table["layer"].to_numpy(np.int64) * span + table["neuron"].to_numpy(np.int64)
        return np.array([row_of.get(x, -1) if ok else -1 for x, ok in zip(k.tolist(), inside, strict=True)])

    up: list[Any] = [None] * n
    down: list[Any] = [None] * n
    if dash.logits is not None:
        logits = dash.logits
        where = rows(logits)
        for r, sign, token, weight in zip(where.tolist(), logits["sign"].tolist(), logits["token"].tolist(),
                                          _num(logits["weight"]), strict=True):  # fmt: skip
            if r >= 0:
                side = up if sign > 0 else down
                if side[r] is None:
                    side[r] = []
                side[r].append([ref(token), weight])
    examples: list[Any] = [None] * n
    table = dash.examples(neurons["layer"].to_numpy()[carried], neurons["neuron"].to_numpy()[carried])
    if table is not None and len(table):
        table = table.sort_values(["layer", "neuron", "rank"])
        for r, act, tokens, acts, at, target in zip(
            rows(table).tolist(), _num(table["activation"]), table["tokens"], table["activations"],
            table["target_index"].tolist(), table["target"].tolist(), strict=True,
        ):  # fmt: skip
            if r >= 0:
                if examples[r] is None:
                    examples[r] = []
                examples[r].append([act, [ref(t) for t in tokens], _num(acts), int(at), str(target)])
    hist: list[Any] = [None] * n
    if dash.histograms is not None:
        h = dash.histograms
        for r, lo, hi, counts in zip(
            rows(h).tolist(), _num(h["lo"]), _num(h["hi"]), h["counts"], strict=True
        ):
            if r >= 0:
                hist[r] = [lo, hi, [int(c) for c in counts]]
    return {
        "strings": list(strings),
        "up": up,
        "down": down,
        "examples": examples,
        "actHist": hist,
        "carried": len(carried),
        "limit": DASHBOARD_NEURONS,
    }


def _search_payload(view: RunView) -> dict[str, Any]:
    """Per token: the clusters (found partition) and neurons that carry it, and the group values of its
    contexts."""
    profiles = sp.coo_array(view.partitions["cluster"].profiles.T)
    tok, cluster, weight = profiles.row.astype(np.int64), profiles.col, profiles.data
    pick = _top_rows(tok, weight, TOKEN_CLUSTERS)
    n = len(view.tokens)
    row, col, w = _edge_rows(view)
    npick = _top_rows(col, w, TOKEN_NEURONS)
    has_token = view.context_token >= 0
    values = {}
    for column, codes in view.codes.items():
        ok = has_token & (codes >= 0)
        pairs = (
            np.unique(np.c_[view.context_token[ok], codes[ok]], axis=0) if ok.any() else np.zeros((0, 2), int)
        )
        values[column] = {"t": pairs[:, 0].tolist(), "v": pairs[:, 1].tolist()}
    return {
        "clusters": _lists(n, tok[pick], cluster[pick].tolist(), _num(weight[pick])),
        "neurons": _lists(n, col[npick], row[npick].tolist(), _num(w[npick])),
        "values": values,
    }


def _token_groups_payload(view: RunView) -> list[dict[str, Any]]:
    groups = view.map.token_groups.sort_values(["group", "rank"])
    out = []
    for g, rows in groups.groupby("group", sort=True):
        head = rows.head(GROUP_TOKENS)
        out.append(
            {
                "group": int(g),
                "size": len(rows),
                "tokens": _token_cols(view, head["token_id"].to_numpy()).tolist(),
                "weights": _num(head["weight"]),
            }
        )
    return out


def _verify_payload(view: RunView, n: int) -> list[list[Any] | None] | None:
    """Per found cluster, the causal check of ``neuronmap verify`` (graph/verify.parquet): [diff, ci low, ci high,
    null mean, adjusted p, passes, events in, events out], or None where not checked; None without a check."""
    path = view.path / "graph" / "verify.parquet"
    if not path.is_file():
        return None
    out: list[list[Any] | None] = [None] * n
    value = lambda v: None if v != v else float(f"{v:.4g}")  # noqa: E731 (NaN: untested)
    for r in pd.read_parquet(path).itertuples():
        if 0 <= r.cluster < n:
            out[r.cluster] = [value(r.diff), value(r.ci_low), value(r.ci_high), value(r.null_mean),
                              value(r.p_adjusted), bool(r.passes), int(r.n_events_in), int(r.n_events_out)]  # fmt: skip
    return out


def _verify_line(summary: dict[str, Any]) -> str | None:
    """How many checked clusters pass the causal check (None: not checked)."""
    found = summary.get("verify") or {}
    if not found.get("tested"):
        return None
    return (
        f"causal check ({found['params']['ablate']} ablation): {len(found['passing'])} of {found['tested']} "
        f"clusters pass ({found['passing_neuron_share']:.0%} of the neurons)"
    )


def _coherence_line(summary: dict[str, Any]) -> str | None:
    """How many clusters pass the coherence test, and their share of the neurons (None: not computed)."""
    found = summary.get("coherence") or {}
    if not found.get("source"):
        return None
    return (
        f"{len(found['coherent'])} of {found['tested']} tested clusters coherent "
        f"(BH q <= {found['alpha']}; {found['coherent_neuron_share']:.0%} of the neurons)"
    )


def _groups_line(summary: dict[str, Any]) -> str | None:
    """AMI of the dominant cluster with each context group, and its permutation p."""
    groups = summary.get("groups") or {}
    parts = [
        f"{column} {entry['ami']:.2f} (p {entry['p']:.3g})"
        for column, entry in groups.items()
        if entry.get("ami") is not None and entry.get("p") is not None
    ]
    return "AMI with groups: " + ", ".join(parts) if parts else None


def _meta(view: RunView) -> dict[str, Any]:
    s = view.summary
    trace = view.manifest["stages"].get("trace", {})
    model = view.manifest.get("model") or {}
    stability = [
        u["stability"]["mean"]
        for u in s.get("units", [])
        if (u.get("stability") or {}).get("mean") is not None
    ]
    return {
        "run": view.path.resolve().name,
        "model": model.get("spec"),
        "nLayers": view.n_layers,
        "dMlp": model.get("d_mlp"),
        "trace": {k: trace.get("params", {}).get(k) for k in ("method", "contexts", "top_k", "positions")},
        "contexts": len(view.contexts),
        "map": {k: s.get(k) for k in ("method", "projection", "scope")},
        "edgeScore": s.get("params", {}).get("edge_score"),
        "tokenField": s.get("params", {}).get("token_field"),
        "counts": s.get("counts", {}),
        "modularityFull": s.get("modularity_full"),
        "modularityPruned": s.get("modularity_pruned", s.get("modularity")),  # older maps: "modularity"
        "coherence": _coherence_line(s),
        "verify": _verify_line(s),
        "groupsAmi": _groups_line(s),
        "targets": target_check(view),  # how many targets the model does not predict top-1
        "clusterability": clusterability_line(s),
        "stability": float(np.mean(stability)) if stability else None,
        "specific": top_specific(view),
        "notes": s.get("notes", []),
        "genericRule": GENERIC_RULE,
        "version": __version__,
    }


def _causal_payload(view: RunView) -> dict[str, Any] | None:
    """The causal traces written into this run (``neuronmap causal-trace --out RUN``): per kind, a heatmap
    (positions x layers) per fact and, for a set, the average by position class. None when there are none."""
    stage = view.manifest["stages"].get("causal_trace") or {}
    path = view.path / "causal_trace.parquet"
    if stage.get("status") != "complete" or not path.is_file():
        return None
    traced = stage.get("model") or {}
    if traced.get("weights_hash") != (view.manifest.get("model") or {}).get("weights_hash"):
        return {
            "note": f"the causal trace in this run is of another model ({traced.get('spec')}); it is not shown"
        }
    table = pd.read_parquet(path)
    facts = pd.read_parquet(view.path / "facts.parquet")
    kinds = [k for k in ("hidden", "mlp", "attn") if k in set(table["kind"])]
    layers = sorted(int(v) for v in table["layer"].unique())
    at = {layer: i for i, layer in enumerate(layers)}

    def grid(rows: pd.DataFrame, key: str, labels: list[Any]) -> list[list[float | None]]:
        z: list[list[float | None]] = [[None] * len(layers) for _ in labels]
        where = {label: i for i, label in enumerate(labels)}
        for label, layer, effect in zip(rows[key], rows["layer"], rows["effect"], strict=True):
            z[where[label]][at[int(layer)]] = float(f"{effect:.4g}")
        return z

    shown = []
    by_fact = dict(tuple(table.groupby("fact_id", sort=False)))
    for fact in facts.head(CAUSAL_FACTS).itertuples():
        rows = by_fact[fact.fact_id]
        positions = list(range(len(fact.tokens)))
        shown.append(
            {
                "subject": fact.subject,
                "prompt": fact.prompt,
                "target": fact.target,
                "tokens": [str(t) for t in fact.tokens],
                "span": [int(fact.subject_start), int(fact.subject_end)],
                "pClean": float(fact.p_clean),
                "pCorrupted": float(fact.p_corrupted),
                "z": {k: grid(rows[rows["kind"] == k], "position", positions) for k in kinds},
            }
        )
    average = None
    average_path = view.path / "causal_trace_average.parquet"
    if average_path.is_file():
        avg = pd.read_parquet(average_path)
        classes = list(dict.fromkeys(avg["position_class"]))
        average = {
            "classes": classes,
            "facts": int(len(facts)),
            "z": {k: grid(avg[avg["kind"] == k], "position_class", classes) for k in kinds},
        }
    return {
        "model": traced.get("spec"),
        "kinds": kinds,
        "layers": layers,
        "facts": shown,
        "nFacts": len(facts),
        "average": average,
    }


def build_payload(view: RunView) -> dict[str, Any]:
    """Everything the page shows, as plain JSON values."""
    contexts = _Contexts()
    payload = {
        "meta": _meta(view),
        "tokens": view.tokens["token"].astype(str).tolist() if "token" in view.tokens else [],
        "words": _target_words(view),  # token column -> the whole targets it stands for, where they differ
        "neurons": _neuron_payload(view, contexts),
        "partitions": {
            name: _partition_payload(view, part, contexts) for name, part in view.partitions.items()
        },
        "groups": view.groups,
        "groupCounts": {
            c: np.bincount(v[v >= 0], minlength=len(view.groups[c])).tolist() for c, v in view.codes.items()
        },
        "tokenGroups": _token_groups_payload(view),
        "search": _search_payload(view),
        "causal": _causal_payload(view),
        "dashboards": _dashboard_payload(view),
    }
    payload["contexts"] = contexts.payload(view)
    return payload


def _script_json(data: Any) -> str:
    """JSON that cannot end its <script> element or open another: <, > and & escaped."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode() + "'"


def render_page(payload: dict[str, Any]) -> str:
    """The HTML of the page for a payload (from ``build_payload``)."""
    from plotly.offline import get_plotlyjs

    static = resources.files("neuronmap.explore") / "static"
    plotly_js, app_js = get_plotlyjs(), (static / "explorer.js").read_text("utf-8")
    csp = (
        "default-src 'none'; script-src "
        + " ".join(_hash(s) for s in (plotly_js, app_js))
        + "; style-src 'unsafe-inline'; img-src data: blob:; font-src data:; connect-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
    parts = {
        "TITLE": html.escape(f"neuronmap · {payload['meta']['run']}"),
        "CSP": html.escape(csp, quote=False),  # no double quote in it: it stays readable
        "STYLE": (static / "explorer.css").read_text("utf-8"),
        "PLOTLY": plotly_js,
        "APP": app_js,
        "DATA": _script_json(payload),
    }
    template = (static / "explorer.html").read_text("utf-8")
    return re.sub(r"\{\{(TITLE|CSP|STYLE|PLOTLY|APP|DATA)\}\}", lambda m: parts[m[1]], template)


def write_page(run: str | Path | RunDir, out: str | Path | None = None, view: RunView | None = None) -> Path:
    """Write the page of a mapped run (default ``RUN/explorer.html``); returns its path."""
    view = view or load_view(run)
    path = Path(out) if out is not None else view.path / PAGE
    atomic_write_text(render_page(build_payload(view)), path)
    record_views(RunDir(view.path), "page", [path])
    return path
