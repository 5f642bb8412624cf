"""Memory at the model's window edge: the peak of tracing one context cut to the window, against its estimate.

Traces one long context with ``--truncate left`` (so it holds exactly the window's tokens) in a fresh process and
compares the peak RSS of the trace beyond the loaded model (the kernel's high-water mark, reset after loading)
with ``models.memory``'s estimate for the same batch. The estimate
must be above the peak (target: peak <= estimate <= 2.5 x peak). Results also go to ``bench/results/window.json``,
which the README quotes. ``python -m bench --only window``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
MEASURE = """
import json, re, sys
import psutil
from neuronmap.models.loader import load_model
from neuronmap.trace.plan import method_bytes
from neuronmap.trace.runner import TraceConfig, trace_run
model, contexts, out, layer = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
lm = load_model(model)
before = psutil.Process().memory_info().rss
with open("/proc/self/clear_refs", "w") as f:  # the peak from here on (Linux): loading's own peak is not the trace's
    f.write("5")
config = TraceConfig(model=model, contexts=contexts, layers=[layer], truncate="left", keep="all", threads=2)
res = trace_run(config, out, loaded=lm, progress=False)
peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) * 1024
ctx = res.contexts.iloc[0]
fp = lm.footprint
layers = lm.adapter.resolve_layers([layer])
estimate = method_bytes(fp, config, layers, 1, len(ctx.input_ids), len(ctx.target_ids), config.batch_size * 8)
print(json.dumps({"tokens": len(ctx.input_ids), "window": lm.window, "layers": layers, "peak": peak - before,
                  "estimate": estimate}))
"""


def measure_window_edge(model: str, folder: Path, layer: int = -1) -> dict[str, object]:
    """Peak RSS (bytes beyond the loaded model) of tracing one context cut to the model's window, and the
    estimate; ``layer`` is the one traced layer (the backward pass reaches down to it)."""
    ctx = folder / "long.jsonl"
    ctx.write_text(
        json.dumps({"text": " ".join(f"word{i % 997} is" for i in range(4000)), "target": "x"}) + "\n"
    )
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MEASURE, model, str(ctx), str(folder / "run"), str(layer)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return {
        **json.loads(proc.stdout.strip().splitlines()[-1]),
        "seconds": round(time.perf_counter() - started, 1),
    }


def run(quick: bool = False) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        got = measure_window_edge("smollm2-135m", Path(tmp))
    ratio = got["estimate"] / got["peak"]
    result = {
        "model": "smollm2-135m",
        **got,
        "ratio": round(ratio, 3),
        "when": time.strftime("%Y-%m-%d %H:%M"),
    }
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "window.json").write_text(json.dumps(result, indent=2) + "\n")
    case = f"smollm2-135m, {got['tokens']} tokens, layer {got['layers'][0]}"
    return [
        {"benchmark": "window", "case": f"{case}: peak RSS", "value": round(got["peak"] / 2**20), "unit": "MB",
         "target": "", "ok": True},
        {"benchmark": "window", "case": f"{case}: estimate / peak", "value": round(ratio, 3), "unit": "ratio",
         "target": "1 to 2.5", "ok": 1 <= ratio <= 2.5},
    ]  # fmt: skip


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())
