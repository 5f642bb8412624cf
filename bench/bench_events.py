"""Each-token tracing against per-context tracing: predictions scored per second, on the same Wikipedia paragraphs.

``each_token_direct_vs_attribution``: events per second of ``trace --each-token --method direct`` over contexts per
second of the per-context ``trace --method attribution`` (one prediction per paragraph, cut after its 24th word),
both through ``neuronmap.trace_run`` with the same loaded SmolLM2-135M, batches of 8, in one process, alternated and
repeated (median). Target: at least 30. Results also go to ``bench/results/events.json``, which the README quotes.
``python -m bench --only events``.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path

from neuronmap.contexts.loaders import load_documents
from neuronmap.models.loader import load_model
from neuronmap.trace.runner import trace_run

CUT_WORDS = 24
HERE = Path(__file__).parent


def _cut_contexts(documents: list[str], path: Path) -> Path:
    rows = []
    for text in documents:
        words = text.split(" ")
        cut = min(len(words) - 1, CUT_WORDS)
        rows.append({"text": " ".join(words[:cut]), "target": words[cut]})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def run(quick: bool = False) -> list[dict[str, object]]:
    n_docs, repeats = (8, 1) if quick else (24, 3)
    lm = load_model("smollm2-135m")
    spec = f"builtin:wiki:{n_docs}"
    documents = [d.text for d in load_documents(spec)]
    each, per = [], []
    with tempfile.TemporaryDirectory() as tmp:
        contexts = _cut_contexts(documents, Path(tmp) / "cut.jsonl")
        for r in range(repeats):
            start = time.perf_counter()
            res = trace_run(out=f"{tmp}/each-{r}", model="smollm2-135m", contexts=spec, each_token=True,
                        method="direct", top_k=32, batch_size=8, loaded=lm, progress=False)  # fmt: skip
            each.append(res.summary["contexts_total"] / (time.perf_counter() - start))
            start = time.perf_counter()
            res = trace_run(out=f"{tmp}/per-{r}", model="smollm2-135m", contexts=str(contexts), method="attribution",
                        keep="all", batch_size=8, loaded=lm, progress=False)  # fmt: skip
            per.append(res.summary["contexts_total"] / (time.perf_counter() - start))
    ratio = statistics.median(each) / statistics.median(per)
    result = {"model": "smollm2-135m", "documents": n_docs, "repeats": repeats, "events_per_second":
              round(statistics.median(each), 1), "contexts_per_second": round(statistics.median(per), 2),
              "ratio": round(ratio, 1), "when": time.strftime("%Y-%m-%d %H:%M")}  # fmt: skip
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "events.json").write_text(json.dumps(result, indent=2) + "\n")
    case = f"smollm2-135m, {n_docs} wiki paragraphs"
    return [
        {"benchmark": "events", "case": f"{case}: each-token direct, events/s", "value": round(statistics.median(each), 1),
         "unit": "events/s", "target": "", "ok": True},
        {"benchmark": "events", "case": f"{case}: per-context attribution, contexts/s",
         "value": round(statistics.median(per), 2), "unit": "contexts/s", "target": "", "ok": True},
        {"benchmark": "events", "case": "each_token_direct_vs_attribution", "value": round(ratio, 1), "unit": "ratio",
         "target": ">= 30", "ok": ratio >= 30},
    ]  # fmt: skip


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())
