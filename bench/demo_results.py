"""``python -m bench.demo_results``: run ``make demo`` into a fresh folder and keep what the README quotes of it.

The demo is timed as a user runs it (setup already done): its wall time and the CPU time of every process it ran
(the kernel's, from ``os.wait4`` on ``make``), and each trace's own seconds from its ``run.json``. Then the numbers
the README quotes from the demo's maps are read from their ``summary.json`` files. Everything goes to
``bench/results/demo.json``; ``tests/test_readme_results.py`` checks the README against it. ``--keep DIR`` reads a
demo already in DIR instead (no timing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.timing import run_timed

HERE = Path(__file__).parent
ROOT = HERE.parent
RESULT = HERE / "results" / "demo.json"


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def run_demo(folder: Path) -> dict[str, float]:
    """``make demo DEMO=folder`` from scratch: wall and CPU seconds (user + system, with every child)."""
    shutil.rmtree(folder, ignore_errors=True)
    # not timed: the README times the demo with the setup done
    subprocess.run(["make", "setup"], cwd=ROOT, check=True)
    seconds, usage = run_timed(["make", "demo", f"DEMO={folder}"], cwd=ROOT)
    return {"wall_seconds": round(seconds, 1), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1)}


def collect(folder: Path) -> dict[str, Any]:
    """What the README quotes of a finished demo in ``folder``."""
    runs = {name: folder / name for name in ("facts", "wiki", "wiki-layers", "wiki-events")}
    manifests = {name: _json(path / "run.json") for name, path in runs.items()}
    summaries = {name: _json(path / "graph" / "summary.json") for name, path in runs.items()}
    traced = {name: m["stages"]["trace"] for name, m in manifests.items() if name != "wiki-layers"}
    wiki = summaries["wiki"]["units"][0]["clusterability"]
    layers = summaries["wiki-layers"]["clusterability"]["layers"]
    floor = summaries["wiki-layers"]["clusterability"]["p_floor"]
    facts_trace = traced["facts"]["summary"]
    return {
        "trace_seconds": {name: t["timing"]["seconds"] for name, t in traced.items()},
        "facts": {
            "candidates": facts_trace["contexts_total"],
            "kept": facts_trace["contexts_kept"],
            "modularity_pruned": round(summaries["facts"]["modularity_pruned"], 3),
            "modularity_full": round(summaries["facts"]["modularity_full"], 3),
        },
        "wiki": {
            "contexts": summaries["wiki"]["counts"]["contexts"],
            "modularity_pruned": round(wiki["pairs"]["real"], 3),
            "pairs_null_mean": round(wiki["pairs"]["null_mean"], 3),
            "pairs_z": round(wiki["pairs"]["z"], 1),
            "swaps_null_mean": round(wiki["swaps"]["null_mean"], 3),
            "swaps_z": round(wiki["swaps"]["z"], 1),
            "swaps_p": wiki["swaps"]["p"],
            "null_samples": summaries["wiki"]["clusterability"]["samples"],
        },
        "wiki_layers": {
            "layers": len(layers),
            "at_p_floor": sum(1 for e in layers if e["p"] is not None and e["p"] <= floor),
            "z": {str(e["layer"]): round(e["z"], 1) for e in layers if e["z"] is not None},
            "p": {str(e["layer"]): e["p"] for e in layers},
        },
        "generic": {
            name: [f"L{n['layer']}/N{n['neuron']}" for n in s["generic"]["neurons"]]
            for name, s in summaries.items()
        },  # fmt: skip
        "wiki_events": {"events": summaries["wiki-events"]["counts"]["contexts"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--folder", type=Path, default=ROOT / "runs" / "demo-measured", help="where the demo goes"
    )
    parser.add_argument("--keep", action="store_true", help="read the demo already in --folder (no timing)")
    args = parser.parse_args()
    timing = None if args.keep else run_demo(args.folder.resolve())
    result = {"when": time.strftime("%Y-%m-%d %H:%M"), "load_average": os.getloadavg()[0], "timing": timing}
    result |= collect(args.folder)
    if timing is None and RESULT.is_file():
        result["timing"] = _json(RESULT).get("timing")
    RESULT.parent.mkdir(exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
