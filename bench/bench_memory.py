"""Memory stays bounded by the batch, not by the number of contexts.

Traces N and 10 x N ``builtin:wiki`` contexts on ``tiny-gpt2``, each in a fresh subprocess, and compares peak RSS.
Target: the large run within 10% of the small one.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

SCRIPT = """
import json, resource, sys
from neuronmap.trace.runner import trace_run
n, out = int(sys.argv[1]), sys.argv[2]
res = trace_run(out=out, model="tiny-gpt2", contexts=f"builtin:wiki:{n}", batch_size=32, part_size=512, progress=False)
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": res.summary["seconds"]}))
"""


def _peak(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-c", SCRIPT, str(n), f"{tmp}/run"], capture_output=True, text=True,
                              check=True)  # fmt: skip
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[dict[str, object]]:
    small_n = 500 if quick else 2000
    small, large = _peak(small_n), _peak(small_n * 10)
    ratio = large["rss_mb"] / small["rss_mb"]
    return [
        {"benchmark": "memory", "case": f"tiny-gpt2 peak RSS, {small_n} contexts", "value": round(small["rss_mb"], 1),
         "unit": "MB", "target": "", "ok": True},
        {"benchmark": "memory", "case": f"tiny-gpt2 peak RSS, {small_n * 10} contexts", "value": round(large["rss_mb"], 1),
         "unit": "MB", "target": "", "ok": True},
        {"benchmark": "memory", "case": "peak RSS ratio (10x contexts / 1x)", "value": round(ratio, 3), "unit": "ratio",
         "target": "<= 1.10", "ok": ratio <= 1.10},
    ]  # fmt: skip


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())
