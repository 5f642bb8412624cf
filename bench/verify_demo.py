"""``python -m bench.verify_demo RUN``: the causal check of a demo map, kept where the README reads it.

Runs ``neuronmap verify`` with its defaults on a copy of ``RUN`` (the demo's ``runs/demo/facts``; the copy leaves
the demo as ``make demo`` wrote it), timed as a child process, and writes the summary's ``verify`` section, the
per-cluster table and the time to ``bench/results/verify_demo.json``, which ``tests/test_readme_results.py``
checks the README against. ``--checked`` reads a copy already checked with the defaults instead (its time from
``run.json``'s ``verify`` record, no peak memory).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

from bench.timing import run_timed

RESULT = Path(__file__).parent / "results" / "verify_demo.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a mapped run (the demo's runs/demo/facts)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checked", action="store_true", help="RUN is a copy already checked: read it")
    args = parser.parse_args()
    if args.checked:
        stage = json.loads((args.run / "run.json").read_text())["stages"]["verify"]
        RESULT.write_text(_result(args.run, stage["timing"]["seconds"], None))
        return
    with tempfile.TemporaryDirectory() as scratch:
        run = Path(scratch) / args.run.name
        shutil.copytree(args.run, run)
        command = [sys.executable, "-m", "neuronmap", "verify", str(run), "--threads", str(args.threads)]
        seconds, usage = run_timed(command)
        RESULT.write_text(_result(run, seconds, round(usage.ru_maxrss / 1024)))


def _result(run: Path, seconds: float, peak_mb: int | None) -> str:
    result = {
        "wall_seconds": round(seconds, 1),
        "peak_rss_mb": peak_mb,
        "verify": json.loads((run / "graph" / "summary.json").read_text())["verify"],
        "clusters": json.loads(pd.read_parquet(run / "graph" / "verify.parquet").to_json(orient="records")),
    }
    return json.dumps(result, indent=2) + "\n"


if __name__ == "__main__":
    main()
