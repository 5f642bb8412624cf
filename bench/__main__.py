"""``python -m bench [--quick] [--only NAME]``: run every ``bench/bench_*.py`` and print one ratio table.

Results also go to ``bench/results/latest.json``. Each benchmark measures its baseline in the same process, so the
ratios hold on a shared, noisy machine where absolute times do not.
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from pathlib import Path

import torch

HERE = Path(__file__).parent


def print_table(rows: list[dict[str, object]]) -> None:
    print("| benchmark | case | value | unit | target | ok |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        ok = "" if not r["target"] else ("yes" if r["ok"] else "NO")
        print(f"| {r['benchmark']} | {r['case']} | {r['value']} | {r['unit']} | {r['target']} | {ok} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats")
    parser.add_argument("--only", help="run bench_NAME only")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = sorted(p.stem for p in HERE.glob("bench_*.py"))
    if args.only:
        names = [n for n in names if n == f"bench_{args.only}"]
    rows: list[dict[str, object]] = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        rows += module.run(quick=args.quick)
    print_table(rows)
    out = HERE / "results" / "latest.json"
    out.parent.mkdir(exist_ok=True)
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": platform.machine(),
        "cpus": torch.get_num_threads(),
    }
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
