"""Map-stage benchmarks: the projection against networkx, communities against the original method, and scale.

- projection vs networkx's ``collaboration_weighted_projected_graph`` on a 40k-edge bipartite graph: speed-up
  (target >= 100x) and identical weights (same edges, |difference| <= 1e-12);
- ``leiden`` and ``louvain`` (time, modularity) against the original method, networkx's projection then
  python-louvain's ``best_partition``, on the same graph;
- 100k contexts x top-100 scores (36,864 neurons, about 4.4M neuron-token edges): projection (top 64
  neighbours) plus Leiden, time (< 3 min) and peak memory (< 2 GB), measured in a fresh process; and, not quick,
  ``map_run`` end to end on that run (no nulls), for information. A full run also writes its rows to
  ``bench/results/graph.json``, which the README quotes.

``run(quick=True)`` shrinks every case to seconds. ``python -m bench.bench_graph [--quick]`` prints the table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import networkx as nx

ROOT = Path(__file__).resolve().parents[1]
TIME_LIMIT_S = 180.0
MEMORY_LIMIT_MB = 2048.0


def _row(case: str, value: float, unit: str, target: str = "", ok: bool = True) -> dict:
    return {
        "benchmark": "graph",
        "case": case,
        "value": float(value),
        "unit": unit,
        "target": target,
        "ok": bool(ok),
    }


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def _cpu_s() -> float:
    """CPU seconds of this process: unlike wall time, not inflated when the machine is shared."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def random_bipartite(n_edges: int, seed: int = 0) -> pd.DataFrame:
    """Neurons x tokens with Zipf-like token degrees, unit weights (the collaboration projection ignores them)."""
    rng = np.random.default_rng(seed)
    n_neurons, n_tokens = n_edges // 7, n_edges // 8
    p = 1.0 / (np.arange(n_tokens) + 10.0) ** 0.6
    token = rng.choice(n_tokens, int(n_edges * 1.2), p=p / p.sum())
    neuron = rng.integers(0, n_neurons, len(token))
    edges = pd.DataFrame({"layer": neuron // 1000, "neuron": neuron % 1000, "token_id": token, "weight": 1.0})
    return edges.drop_duplicates(["layer", "neuron", "token_id"]).head(n_edges).reset_index(drop=True)


def networkx_bipartite(edges: pd.DataFrame, neurons: pd.DataFrame) -> tuple[list, nx.Graph]:
    """The neuron<->token graph as networkx wants it, neurons in ``project``'s order (the peers' input)."""
    import networkx as nx

    nodes = list(zip(neurons["layer"].tolist(), neurons["neuron"].tolist(), strict=True))
    bip = nx.Graph()
    bip.add_nodes_from(nodes)
    bip.add_edges_from(((r.layer, r.neuron), ("token", r.token_id)) for r in edges.itertuples())
    return nodes, bip


def bench_original_method(n_edges: int) -> list[dict]:
    """Projection and communities against the networkx + python-louvain pipeline, on one graph."""
    from community import community_louvain
    from networkx.algorithms import bipartite

    from neuronmap.graph import project
    from neuronmap.graph.communities import Leiden, Louvain
    from neuronmap.graph.quality import modularity

    edges = random_bipartite(n_edges)
    start = time.perf_counter()
    graph, neurons = project(edges, "collaboration", neighbors=None)
    ours_s = time.perf_counter() - start
    nodes, bip = networkx_bipartite(edges, neurons)
    start = time.perf_counter()
    reference = bipartite.collaboration_weighted_projected_graph(bip, nodes)
    networkx_s = time.perf_counter() - start

    index = {node: i for i, node in enumerate(nodes)}
    expected = {
        (min(index[u], index[v]), max(index[u], index[v])): w for u, v, w in reference.edges(data="weight")
    }
    upper = graph.tocoo()
    mine = {
        (i, j): w
        for i, j, w in zip(upper.row.tolist(), upper.col.tolist(), upper.data.tolist(), strict=True)
        if i < j
    }
    same = set(mine) == set(expected)
    worst = max(abs(mine[key] - expected[key]) for key in expected) if same else float("inf")
    case = f"{len(edges) // 1000}k edges"
    rows = [
        _row(f"projection, networkx ({case})", networkx_s, "s"),
        _row(f"projection, neuronmap ({case})", ours_s, "s"),
        _row(
            f"projection speed-up vs networkx ({case})",
            networkx_s / ours_s,
            "x",
            ">= 100",
            networkx_s / ours_s >= 100,
        ),
        _row(
            f"projection max |weight - networkx| ({case})", worst, "", "<= 1e-12, same edges", worst <= 1e-12
        ),
    ]

    start = time.perf_counter()
    parts = community_louvain.best_partition(reference, random_state=0)
    original_s = networkx_s + time.perf_counter() - start
    original_q = community_louvain.modularity(parts, reference)
    rows += [
        _row(f"original (networkx + python-louvain) time ({case})", original_s, "s"),
        _row(f"original modularity ({case})", original_q, ""),
    ]
    for name, estimator in [("leiden", Leiden(random_state=0)), ("louvain", Louvain(random_state=0))]:
        start = time.perf_counter()
        graph, _ = project(edges, "collaboration", neighbors=None)
        labels = estimator.fit(graph).labels_
        took = time.perf_counter() - start
        q = modularity(graph, labels)
        faster = "< original" if name == "leiden" else ""
        rows += [
            _row(
                f"{name} time, projection included ({case})",
                took,
                "s",
                faster,
                name != "leiden" or took < original_s,
            ),
            _row(f"{name} modularity ({case})", q, "", ">= original - 0.01", q >= original_q - 0.01),
        ]
    return rows


def synthetic_trace(n_contexts: int, top: int = 100, n_layers: int = 12, d_mlp: int = 3072, seed: int = 0):
    """Contexts and top-``top`` scores with realistic skew: Zipf target tokens (hub tokens reach most neurons),
    64 topics of neurons, each token preferring 260 neurons of its topic (60% of a context's scores) and a
    popularity-skewed rest. Returns (contexts, scores) as the trace stage writes them."""
    rng = np.random.default_rng(seed)
    n_neurons, vocab, topics, preferred = n_layers * d_mlp, 20_000, 64, 260
    p = 1.0 / (np.arange(vocab) + 3.0) ** 1.05
    token = rng.choice(vocab, n_contexts, p=p / p.sum())
    topic_neurons = rng.permutation(n_neurons).reshape(topics, -1)
    offset = rng.integers(topic_neurons.shape[1], size=vocab)
    from_topic = int(top * 0.6)
    pick = np.argsort(rng.random((n_contexts, preferred)), axis=1)[:, :from_topic]
    window = (offset[token][:, None] + pick) % topic_neurons.shape[1]
    specific = topic_neurons[rng.integers(topics, size=vocab)[token][:, None], window]
    popularity = 1.0 / (np.arange(n_neurons) + 50.0) ** 0.8
    common = rng.permutation(n_neurons)[
        rng.choice(n_neurons, (n_contexts, top - from_topic), p=popularity / popularity.sum())
    ]
    neuron = np.concatenate([specific, common], axis=1).ravel()
    context = np.repeat(np.arange(n_contexts), top)
    unique = np.unique(context.astype(np.int64) * n_neurons + neuron)  # one score per (context, neuron)
    context, neuron = unique // n_neurons, unique % n_neurons
    scores = pd.DataFrame(
        {
            "context_id": context,
            "layer": (neuron // d_mlp).astype(np.int32),
            "neuron": (neuron % d_mlp).astype(np.int32),
            "score": rng.gamma(2.0, 1.0, len(unique)).astype(np.float32),
        }
    )
    contexts = pd.DataFrame(
        {
            "context_id": np.arange(n_contexts),
            "text": [f"context {i}" for i in range(n_contexts)],
            "target": [f" t{t}" for t in token],
            "target_ids": [[int(t)] for t in token],
            "subject": None,
            "p_target": 0.5,
            "input_ids": [[1, 2, int(t)] for t in token],
            "tokens": [["a", "b", f" t{t}"] for t in token],
            "target_tokens": [[f" t{t}"] for t in token],
            "position": 1,
        }
    )
    return contexts, scores


def _child_edges(folder: Path, n_contexts: int, n_layers: int, d_mlp: int) -> dict:
    """Write the synthetic run (as trace would) and its edges table."""
    from neuronmap.graph.bipartite import build_edges
    from neuronmap.rundir import RunDir, atomic_write_parquet

    contexts, scores = synthetic_trace(n_contexts, n_layers=n_layers, d_mlp=d_mlp)
    start = time.perf_counter()
    edges = build_edges(contexts, scores)
    build_s = time.perf_counter() - start
    RunDir(folder).write_manifest(
        {
            "model": {
                "spec": "synthetic",
                "arch": "-",
                "n_layers": n_layers,
                "d_mlp": d_mlp,
                "weights_hash": "-",
            },
            "stages": {"trace": {"status": "complete", "method": "synthetic", "top_k": 100}},
        }
    )
    atomic_write_parquet(contexts, folder / "contexts.parquet")
    atomic_write_parquet(scores, folder / "scores.parquet")
    atomic_write_parquet(edges, folder / "bench_edges.parquet")
    return {"scores": len(scores), "edges": len(edges), "build_s": build_s}


def _child_cluster(folder: Path) -> dict:
    """Projection (weighted, top 64 neighbours) plus Leiden, from the edges table."""
    from neuronmap.graph import project
    from neuronmap.graph.communities import Leiden
    from neuronmap.graph.quality import modularity

    edges = pd.read_parquet(folder / "bench_edges.parquet")
    start, cpu = time.perf_counter(), _cpu_s()
    graph, neurons = project(edges, "weighted", neighbors=64)
    project_s = time.perf_counter() - start
    labels = Leiden(random_state=0).fit(graph).labels_
    total_s, cpu_s = time.perf_counter() - start, _cpu_s() - cpu
    return {
        "neurons": len(neurons),
        "neuron_edges": graph.nnz // 2,
        "clusters": int(labels.max()) + 1,
        "modularity": modularity(graph, labels),
        "project_s": project_s,
        "total_s": total_s,
        "cpu_s": cpu_s,
        "peak_mb": _peak_mb(),
    }


def _child_map_run(folder: Path) -> dict:
    from neuronmap.graph import map_run

    start = time.perf_counter()
    result = map_run(folder, null_samples=0, stability_seeds=0, force=True)
    return {
        "seconds": time.perf_counter() - start,
        "peak_mb": _peak_mb(),
        "clusters": result.summary["counts"]["clusters"],
    }


def _in_child(kind: str, folder: Path, *extra: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_graph", "--child", kind, str(folder), *extra],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"benchmark child {kind!r} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_scale(n_contexts: int, n_layers: int, d_mlp: int, end_to_end: bool) -> list[dict]:
    case = f"{n_contexts // 1000}k contexts x top-100, {n_layers}x{d_mlp} neurons"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "run"
        made = _in_child("edges", folder, str(n_contexts), str(n_layers), str(d_mlp))
        done = _in_child("cluster", folder)
        rows = [
            _row(f"score rows ({case})", made["scores"], "rows"),
            _row(f"neuron-token edges ({case})", made["edges"], "edges"),
            _row(f"neurons ({case})", done["neurons"], "neurons"),
            _row(f"edges from scores ({case})", made["build_s"], "s"),
            _row(f"projection, top-64 neighbours ({case})", done["project_s"], "s"),
            _row(
                f"projection + leiden ({case})",
                done["total_s"],
                "s",
                f"< {TIME_LIMIT_S:.0f}",
                done["total_s"] < TIME_LIMIT_S,
            ),
            _row(f"projection + leiden CPU time, all threads ({case})", done["cpu_s"], "s"),
            _row(
                f"projection + leiden peak memory ({case})",
                done["peak_mb"],
                "MB",
                f"< {MEMORY_LIMIT_MB:.0f}",
                done["peak_mb"] < MEMORY_LIMIT_MB,
            ),
            _row(f"leiden clusters ({case})", done["clusters"], "clusters"),
            _row(f"leiden modularity ({case})", done["modularity"], ""),
        ]
        if end_to_end:
            whole = _in_child("map_run", folder)
            rows += [
                _row(f"map_run end to end, no nulls ({case})", whole["seconds"], "s"),
                _row(f"map_run peak memory ({case})", whole["peak_mb"], "MB"),
            ]
    return rows


def run(quick: bool = False) -> list[dict]:
    """The map-stage benchmark rows (see the module docstring); ``quick`` runs reduced cases in seconds."""
    if quick:
        return bench_original_method(10_000) + bench_scale(5_000, 4, 1024, end_to_end=False)
    rows = bench_original_method(40_000) + bench_scale(100_000, 12, 3072, end_to_end=True)
    meta = {"when": time.strftime("%Y-%m-%d %H:%M"), "load_average": os.getloadavg()[0]}
    (ROOT / "bench" / "results" / "graph.json").write_text(
        json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced cases, seconds instead of minutes")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, folder, *extra = args.child
        work = {
            "edges": lambda: _child_edges(Path(folder), *map(int, extra)),
            "cluster": lambda: _child_cluster(Path(folder)),
            "map_run": lambda: _child_map_run(Path(folder)),
        }[kind]
        print(json.dumps(work()))
        return
    rows = run(quick=args.quick)
    width = max(len(r["case"]) for r in rows)
    for r in rows:
        flag = "ok" if r["ok"] else "MISS"
        print(f"{r['case']:<{width}}  {r['value']:>14.6g} {r['unit']:<8} {r['target']:<22} {flag}")


if __name__ == "__main__":
    main()
