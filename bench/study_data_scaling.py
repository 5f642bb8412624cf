"""Does more data make the each-token map mean more? ``python -m bench.study_data_scaling``.

Traces the first 10, 100, 1,000 and all 10,031 lead paragraphs of ``builtin:wiki`` with ``trace --each-token
--method direct --min-prefix 4 --group-by pos`` on SmolLM2-135M (about 1k, 10k, 100k and 1M events; the
paragraphs of a smaller size are the first ones of every larger size), maps each with the defaults (Leiden on the
weighted projection, top-64 neighbours) and records what the map says it knows: the share of clusters (and of
neurons) that pass the coherence test, the AMI of each event's dominant cluster with the part of speech of its
target and with the paragraph's topic (with their label-shuffle nulls, shuffled within and between documents),
both modularities against the ``swaps`` null (the only one drawn), and the stability (mean ARI over 5 other seeds).

Each command runs in a child process (the CLI a user runs), timed with its peak resident memory from the kernel
(``os.wait4``); a stage found complete is not redone, and keeps the time and memory recorded when it was done.
Results go to ``bench/results/data_scaling.json`` and the figure to ``bench/results/data_scaling.png``, which the
README quotes and shows. ``--docs`` picks sizes, ``--null-samples`` the map's samples per null kind for the
sizes given (the largest map costs about a minute a null network).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from bench.timing import run_timed

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "data_scaling.json"
FIGURE = HERE / "results" / "data_scaling.png"
SIZES = (10, 100, 1000, 10031)
NEURONMAP = [sys.executable, "-m", "neuronmap"]
NULLS = "swaps"  # the null the clusterability test reads; the others would triple the cost
TRACE = [
    "--model",
    "smollm2-135m",
    "--batch-size",
    "8",
    "--each-token",
    "--method",
    "direct",
    "--min-prefix",
    "4",
]


def _child(args: list[str], nice: int) -> dict[str, float]:
    """Run ``neuronmap ARGS``; its wall seconds and peak resident MB (the kernel's, for that child alone)."""
    seconds, usage = run_timed([*NEURONMAP, *args], nice=nice)
    return {"seconds": round(seconds, 1), "peak_mb": round(usage.ru_maxrss / 1024)}


def trace_stage(docs: int, runs: Path, threads: int, nice: int, old: dict[str, Any]) -> dict[str, Any] | None:
    """Trace the first ``docs`` paragraphs unless done; the child's time and memory (None when found done)."""
    run = runs / f"docs-{docs}"
    if (run / "contexts.parquet").is_file():
        return old.get("trace")
    # a resumed trace's time is its last stretch only: the events already traced say how much that stretch did
    done = [p.with_name("contexts" + p.name[6:]) for p in sorted((run / "parts").glob("scores-*.parquet"))]
    before = sum(pq.read_metadata(p).num_rows for p in done)
    args = [
        "trace",
        *TRACE,
        "--threads",
        str(threads),
        "--contexts",
        f"builtin:wiki:{docs}",
        "--group-by",
        "pos",
    ]
    return _child([*args, "--out", str(run)], nice) | {"resumed": bool(done), "events_before": before}


def map_stage(docs: int, runs: Path, null_samples: int, nice: int, old: dict[str, Any]) -> dict[str, Any]:
    """Map the run unless its map was measured here before; then what the map says, read from its files."""
    run = runs / f"docs-{docs}"
    entry: dict[str, Any] = {"documents": docs, "run": str(run), "trace": old.get("trace")}
    options = {"null_samples": null_samples, "nulls": NULLS}
    measured = old.get("map") or {}
    if (run / "graph" / "summary.json").is_file() and {k: measured.get(k) for k in options} == options:
        entry["map"] = measured
    else:
        shutil.rmtree(run / "graph", ignore_errors=True)  # a map without its measurement is measured anew
        args = ["map", str(run), "--null-samples", str(null_samples), "--nulls", NULLS, "--export", "none"]
        entry["map"] = _child([*args, "--force"], nice) | options
    summary = json.loads((run / "graph" / "summary.json").read_text())
    manifest = json.loads((run / "run.json").read_text())
    unit = summary["units"][0]
    groups = summary["groups"]
    entry |= {
        "events": summary["counts"]["contexts"],
        "trace_seconds_recorded": manifest["stages"]["trace"]["timing"]["seconds"],
        "null_seconds": manifest["stages"]["map"]["timing"].get("null_seconds"),
        "neurons": summary["counts"]["neurons"],
        "tokens": summary["counts"]["tokens"],
        "clusters": summary["counts"]["clusters"],
        "coherence_tested": summary["coherence"]["tested"],
        "coherent": len(summary["coherence"]["coherent"]),
        "coherent_share": len(summary["coherence"]["coherent"]) / max(summary["coherence"]["tested"], 1),
        "coherent_neuron_share": summary["coherence"]["coherent_neuron_share"],
        "modularity_full": summary["modularity_full"],
        "modularity_pruned": summary["modularity_pruned"],
        "swaps_null_mean": unit["clusterability"].get("swaps", {}).get("null_mean"),
        "swaps_null_std": unit["clusterability"].get("swaps", {}).get("null_std"),
        "clusterability": {k: summary["clusterability"].get(k) for k in ("p", "z", "null", "samples")},
        "stability_ari": unit["stability"]["mean"] if unit.get("stability") else None,
        "groups": {
            name: {
                k: groups[name].get(k) for k in ("ami", "null_mean", "null_std", "p", "samples", "shuffle")
            }
            for name in ("pos", "topic")
            if name in groups
        },
        "generic": [
            f"L{n['layer']}/N{n['neuron']}" for n in (summary.get("generic") or {}).get("neurons", [])
        ],
        "largest_clusters": _largest(run),
    }
    return entry


def _largest(run: Path, n: int = 8) -> list[dict[str, Any]]:
    """The ``n`` largest clusters: size, main layer, coherence test and first top tokens."""
    import pandas as pd

    table = pd.read_parquet(run / "graph" / "clusters.parquet")
    table = table.sort_values(["size", "cluster"], ascending=[False, True])
    return [
        {"cluster": int(c.cluster), "size": int(c.size), "main_layer": int(c.main_layer),
         "coherent": bool(c.coherent), "top_tokens": [str(t) for t in list(c.top_tokens)[:6]]}
        for c in table.head(n).itertuples()
    ]  # fmt: skip


def readme_table(entries: list[dict[str, Any]]) -> str:
    """The README's table of the study, made from its result file (a test checks the README holds it)."""

    def ami(e: dict[str, Any], name: str) -> str:
        g = e["groups"].get(name)
        if not g or g["ami"] is None:
            return "-"
        return f"{g['ami']:.3f} ({g['null_mean']:.3f}; p {g['p']:.3g})"

    lines = [
        "| events | paragraphs | neurons | clusters | coherent clusters | their neurons | AMI pos (shuffled; p) "
        "| AMI topic (shuffled; p) | modularity full / pruned | swaps null (z) | ARI |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for e in sorted(entries, key=lambda e: e["events"]):
        z = "-" if e["clusterability"]["z"] is None else f"{e['clusterability']['z']:+.1f}"
        ari = "-" if e["stability_ari"] is None else f"{e['stability_ari']:.2f}"
        lines.append(
            f"| {e['events']:,} | {e['documents']:,} | {e['neurons']:,} | {e['clusters']} "
            f"| {e['coherent']} of {e['coherence_tested']} | {e['coherent_neuron_share']:.0%} "
            f"| {ami(e, 'pos')} | {ami(e, 'topic')} "
            f"| {e['modularity_full']:.3f} / {e['modularity_pruned']:.3f} "
            f"| {e['swaps_null_mean']:.3f} ({z}) | {ari} |"
        )
    return "\n".join(lines)


def figure(entries: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = sorted(entries, key=lambda e: e["events"])
    x = [e["events"] for e in entries]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    ax = axes[0]
    ax.plot(x, [e["coherent_share"] for e in entries], "o-", label="clusters")
    ax.plot(x, [e["coherent_neuron_share"] for e in entries], "s--", label="neurons in them")
    ax.set(title="coherent (BH q <= 0.05)", ylabel="share", ylim=(0, 1.02))
    ax = axes[1]
    for name, marker in (("pos", "o"), ("topic", "s")):
        got = [e for e in entries if name in e["groups"] and e["groups"][name]["ami"] is not None]
        ax.plot([e["events"] for e in got], [e["groups"][name]["ami"] for e in got], marker + "-", label=name)
        ax.plot([e["events"] for e in got], [e["groups"][name]["null_mean"] for e in got], marker + ":",
                color=ax.lines[-1].get_color(), alpha=0.6, label=f"{name}, shuffled")  # fmt: skip
    ax.set(title="AMI(dominant cluster, group)", ylabel="AMI")
    ax = axes[2]
    ax.plot(x, [e["modularity_full"] for e in entries], "o-", label="full projection")
    ax.plot(x, [e["modularity_pruned"] for e in entries], "s-", label="pruned (clustered)")
    mean = [e["swaps_null_mean"] for e in entries]
    spread = [2 * (e["swaps_null_std"] or 0) for e in entries]
    ax.errorbar(x, mean, yerr=spread, fmt="^:", label="swaps null (pruned, ±2 sd)")
    ax.set(title="modularity", ylabel="modularity")
    ax = axes[3]
    ax.plot(x, [e["stability_ari"] for e in entries], "o-")
    ax.set(title="stability: mean ARI, 5 other seeds", ylabel="ARI", ylim=(0, 1.02))
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("events (each-token, builtin:wiki)")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.suptitle("SmolLM2-135M, --method direct, Leiden on the weighted projection: more data, more meaning?")
    fig.tight_layout()
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--docs", default=",".join(map(str, SIZES)), help="paragraph counts, comma-separated")
    parser.add_argument("--runs", type=Path, default=Path("runs/scaling"), help="where the runs go")
    parser.add_argument("--null-samples", type=int, default=20, help="the map's samples per null kind")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the traces")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the children (share the machine)")
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"entries": []}
    entries = {e["documents"]: e for e in results["entries"]}

    mine: set[int] = set()

    def save() -> None:
        # other sizes may be measured by another process at the same time: keep what the file has for them
        if RESULTS.is_file():
            for e in json.loads(RESULTS.read_text())["entries"]:
                if e["documents"] not in mine:
                    entries[e["documents"]] = e
        done = [entries[d] for d in sorted(entries) if "events" in entries[d]]
        results = {
            "model": "smollm2-135m",
            "trace": " ".join(TRACE) + " --group-by pos",
            "map": "defaults (leiden, weighted projection, 64 neighbours, 5 stability seeds), "
            f"--nulls {NULLS} --export none",
            "entries": [entries[d] for d in sorted(entries)],
        }
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
        if done:
            figure(done, FIGURE)

    for docs in (int(d) for d in args.docs.split(",")):
        mine.add(docs)
        old = entries.get(docs, {})
        entries[docs] = {
            **old,
            "documents": docs,
            "trace": trace_stage(docs, args.runs, args.threads, args.nice, old),
        }
        save()  # a trace of hours is kept even if its map is stopped
        entries[docs] = map_stage(docs, args.runs, args.null_samples, args.nice, entries[docs])
        save()
        print(json.dumps(entries[docs], indent=2), flush=True)


if __name__ == "__main__":
    main()
