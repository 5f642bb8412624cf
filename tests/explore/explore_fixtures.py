"""Runs for the explore tests, written as the trace stage writes them (and mapped by map_run, or with graph
tables written directly for the large one).

Their tokens, texts and group values carry hostile strings (an <img onerror> and a </script>), so that every
test of the page is also a test of its escaping.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from neuronmap.graph.api import map_run
from neuronmap.rundir import RunDir, atomic_write_parquet

XSS = '<img src=x onerror="window.__pwned=1;alert(1)">'
SCRIPT_END = "</script><script>window.__pwned=2</script>"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def token_name(group: int, k: int) -> str:
    """The k-th token of a group; group 0 and 1 lead with the hostile strings."""
    if k == 0 and group == 0:
        return " " + XSS
    if k == 0 and group == 1:
        return " " + SCRIPT_END
    return f" tok{group}{'abcdefgh'[k]}"


def synthetic_trace(
    n_groups: int = 4,
    n_layers: int = 3,
    d_mlp: int = 24,
    contexts_per_group: int = 24,
    tokens_per_group: int = 4,
    neurons_per_context: int = 8,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contexts and top-k scores in which the neurons of group g (a block of each layer) score high on the
    contexts whose target is one of group g's tokens; a few weak random and negative scores besides."""
    rng = np.random.default_rng(seed)
    block = d_mlp // n_groups
    contexts, scores = [], []
    for cid in range(n_groups * contexts_per_group):
        g = cid % n_groups
        k = int(rng.integers(tokens_per_group))
        token_id, token = 1000 + g * tokens_per_group + k, token_name(g, k)
        text = f"{XSS} context {cid} of group {g}" if cid % 5 == 0 else f"context {cid} {SCRIPT_END} says"
        contexts.append(
            {
                "context_id": cid,
                "text": text,
                "target": token.strip(),
                "target_ids": [token_id],
                "subject": None,
                "p_target": float(rng.uniform(0.1, 0.9)),
                "known": True,
                "input_ids": [7, 8, 9],
                "tokens": ["con", "text", " says"],
                "target_tokens": [token],
                "position": 2,
                "relation": XSS if g == 0 else "costs in $ and $" if g == 2 else f"relation {g}",
                "pos": ["NOUN", "VERB"][cid % 2],
                "title": f"title {cid}",  # one value per context: not a group
            }
        )
        picked = rng.choice(block * n_layers, neurons_per_context, replace=False)
        rows = [(int(p % n_layers), int(g * block + p // n_layers), rng.uniform(1.0, 2.0)) for p in picked]
        for f in rng.choice(n_layers * d_mlp, 3, replace=False):
            rows.append((int(f // d_mlp), int(f % d_mlp), float(rng.uniform(-0.8, 0.3))))
        seen = set()
        for layer, neuron, score in rows:
            if (layer, neuron) not in seen:
                seen.add((layer, neuron))
                scores.append((cid, layer, neuron, score))
    table = pd.DataFrame(scores, columns=["context_id", "layer", "neuron", "score"]).astype(
        {"context_id": np.int64, "layer": np.int32, "neuron": np.int32, "score": np.float32}
    )
    return pd.DataFrame(contexts), table


def write_run(path: Path, contexts: pd.DataFrame, scores: pd.DataFrame, n_layers: int, d_mlp: int) -> Path:
    rd = RunDir(path)
    model = {"spec": "synthetic", "arch": "llama", "n_layers": n_layers, "d_mlp": d_mlp, "weights_hash": "0"}
    rd.write_manifest(
        {
            "model": model,
            "stages": {
                "trace": {
                    "status": "complete",
                    "params": {"method": "attribution", "contexts": "synthetic", "top_k": 16},
                }
            },
        }
    )
    atomic_write_parquet(contexts, path / "contexts.parquet")
    atomic_write_parquet(scores, path / "scores.parquet")
    return path


def make_mapped_run(path: Path, *, map_params: dict | None = None, **trace_kwargs) -> Path:
    n_layers, d_mlp = trace_kwargs.get("n_layers", 3), trace_kwargs.get("d_mlp", 24)
    contexts, scores = synthetic_trace(**trace_kwargs)
    write_run(path, contexts, scores, n_layers, d_mlp)
    params = {"null_samples": 3, "stability_seeds": 1, "export": "none", "seed": 0} | (map_params or {})
    map_run(path, **params)
    return path


def write_large_map(
    path: Path, n_clusters: int = 500, n_layers: int = 20, d_mlp: int = 2000, seed: int = 0
) -> Path:
    """A run of n_layers x d_mlp neurons (40,000 by default) in ``n_clusters`` clusters, with its graph tables
    written directly in the map stage's documented schema (map_run would take minutes on this many neurons)."""
    rng = np.random.default_rng(seed)
    n = n_layers * d_mlp
    layer, neuron = (
        np.repeat(np.arange(n_layers), d_mlp).astype(np.int32),
        np.tile(np.arange(d_mlp), n_layers),
    )
    cluster = np.sort(rng.integers(0, n_clusters, n))[rng.permutation(n)].astype(np.int32)
    cluster = np.unique(cluster, return_inverse=True)[1].astype(np.int32)
    merged = (cluster // 2).astype(np.int32)
    n_tokens, n_contexts = 3 * n_clusters, 8000
    token_of_cluster = rng.integers(0, 3, n_clusters) + 3 * np.arange(n_clusters)
    contexts = pd.DataFrame(
        {
            "context_id": np.arange(n_contexts),
            "text": [f"context number {i} about {XSS}" for i in range(n_contexts)],
            "target": [f"tok{i % n_tokens}" for i in range(n_contexts)],
            "target_ids": [[int(i % n_tokens)] for i in range(n_contexts)],
            "subject": None,
            "p_target": 0.5,
            "known": True,
            "input_ids": [[1, 2]] * n_contexts,
            "tokens": [["a", "b"]] * n_contexts,
            "target_tokens": [[f" tok{i % n_tokens}"] for i in range(n_contexts)],
            "position": 1,
            "topic": [f"topic {i % 12}" for i in range(n_contexts)],
        }
    )
    # Each neuron scores on three contexts whose target is one of its cluster's tokens.
    rows = np.repeat(np.arange(n), 3)
    token = token_of_cluster[cluster[rows]]
    ctx = token + n_tokens * rng.integers(0, n_contexts // n_tokens, len(rows))
    scores = pd.DataFrame(
        {
            "context_id": ctx,
            "layer": layer[rows],
            "neuron": neuron[rows],
            "score": rng.uniform(0.1, 1, len(rows)),
        }
    ).astype({"context_id": np.int64, "layer": np.int32, "neuron": np.int32, "score": np.float32})
    scores = scores.drop_duplicates(["context_id", "layer", "neuron"]).sort_values(
        ["context_id", "layer", "neuron"]
    )
    write_run(path, contexts, scores, n_layers, d_mlp)
    edges = (
        scores.assign(token_id=scores["context_id"] % n_tokens)
        .groupby(["layer", "neuron", "token_id"], as_index=False)
        .agg(weight=("score", "sum"), contexts=("score", "size"))
    )
    edges.insert(3, "token", " tok" + edges["token_id"].astype(str))
    edges["weight"] = edges["weight"].astype(np.float64)
    graph = path / "graph"
    hist = np.zeros((n_clusters, n_layers), np.int64)
    np.add.at(hist, (cluster, layer), 1)
    size = np.bincount(cluster, minlength=n_clusters)
    atomic_write_parquet(edges, graph / "edges.parquet")
    atomic_write_parquet(
        pd.DataFrame(
            {
                "layer": layer,
                "neuron": neuron.astype(np.int32),
                "global_id": layer.astype(np.int64) * d_mlp + neuron,
                "cluster": cluster,
                "merged_cluster": merged,
                "degree": pd.array(rng.integers(1, 64, n), dtype="Int64"),
                "strength": rng.uniform(0, 5, n),
                "n_tokens": np.ones(n, np.int64),
                "token_weight": rng.uniform(0, 3, n),
            }
        ),
        graph / "neurons.parquet",
    )
    zeros = np.zeros(n_clusters)
    atomic_write_parquet(
        pd.DataFrame(
            {
                "cluster": np.arange(n_clusters, dtype=np.int32),
                "merged_cluster": (np.arange(n_clusters) // 2).astype(np.int32),
                "layer": pd.array([None] * n_clusters, dtype="Int32"),
                "size": size,
                "main_layer": hist.argmax(1).astype(np.int32),
                "layer_hist": list(hist),
                "volume": zeros,
                "within": zeros,
                "cut": zeros,
                "ncut": zeros,
                "modularity": zeros,
                "token_weight": zeros,
                "top_tokens": [[f" tok{t}"] for t in token_of_cluster],
            }
        ),
        graph / "clusters.parquet",
    )
    tokens = []
    for partition, labels in (("cluster", np.arange(n_clusters)), ("merged", np.arange(n_clusters) // 2)):
        for c in np.unique(labels):
            ts = token_of_cluster[labels == c]
            for rank, t in enumerate(ts):
                tokens.append((partition, int(c), rank, int(t), f" tok{t}", 1.0, 1 / len(ts), 3.0, 0.5))
    atomic_write_parquet(
        pd.DataFrame(
            tokens,
            columns=["partition", "cluster", "rank", "token_id", "token", "weight", "share", "lift", "score"],
        ).astype({"cluster": np.int32, "rank": np.int32}),
        graph / "cluster_tokens.parquet",
    )
    used = np.unique(edges["token_id"])
    atomic_write_parquet(
        pd.DataFrame(
            {
                "group": (used // 30).astype(np.int32),
                "rank": (used % 30).astype(np.int32),
                "token_id": used,
                "token": [f" tok{t}" for t in used],
                "weight": np.ones(len(used)),
                "top_cluster": (used // 3).astype(np.int32),
                "group_size": np.full(len(used), 30, np.int64),
            }
        ),
        graph / "token_groups.parquet",
    )
    summary = {
        "method": "leiden",
        "projection": "weighted",
        "scope": "cross-layer",
        "modularity": 0.5,
        "ncut": 1.0,
        "params": {"edge_score": "positive", "token_field": "target", "seed": 0},
        "counts": {
            "neurons": n,
            "clusters": n_clusters,
            "merged_clusters": n_clusters // 2,
            "edges": len(edges),
        },
        "units": [
            {"layer": None, "modularity": 0.5, "clusterability": None, "stability": None, "ncut_curve": None}
        ],
        "notes": [],
    }
    (graph / "summary.json").write_text(json.dumps(summary))
    RunDir(path).set_stage("map", status="complete", params={})
    return path
