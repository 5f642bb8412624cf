"""Edit-wing speed as ratios to the plain way of computing the same numbers, measured in one process.

- causal-trace: a fact's full hidden-state grid with blocks replayed from one corrupted pass, against one
  hooked forward pass per (layer, position) cell as ROME computes it. Target: at most 0.7x.
- value-step: one step of ROME's value search (blocks before the edited layer replayed, logits only where the
  loss reads them), against a plain forward + backward of the same rows. Target: at most 0.9x.

Runs alternate and the median is used, since this machine is shared. A full run writes
``bench/results/edit.json``, which the README quotes.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from neuronmap.edit.dsets import Fact
from neuronmap.edit.experiments.causal_trace import (
    TraceSettings,
    encode_trace_fact,
    noise_draws,
    restored_prob,
    subject_noise_std,
    trace_fact,
)
from neuronmap.models.loader import LoadedModel, load_model

Row = dict[str, object]
RESULT = Path(__file__).parent / "results" / "edit.json"
FACT = Fact(0, "The {} is located in the city of", "Eiffel Tower", "Paris")


def _median_pair(a: Callable[[], object], b: Callable[[], object], repeats: int) -> tuple[float, float]:
    ta, tb = [], []
    for _ in range(repeats):
        for fn, store in ((a, ta), (b, tb)):
            start = time.perf_counter()
            fn()
            store.append(time.perf_counter() - start)
    return statistics.median(ta), statistics.median(tb)


def _trace_rows(lm: LoadedModel, layers: tuple[int, ...], repeats: int) -> Row:
    std = subject_noise_std(lm, ["Eiffel Tower", "Colosseum", "Japan"])
    settings = TraceSettings(kinds=("hidden",), samples=3, noise_std=std, layers=layers)
    enc, _ = encode_trace_fact(lm, FACT)
    noise = noise_draws(
        lm, enc.subject_span[1] - enc.subject_span[0], settings, f"{FACT.prompt}|{FACT.subject}"
    )
    cells = [(layer, t) for layer in layers for t in range(enc.position + 1)]

    def plain() -> None:
        for layer, t in cells:
            restored_prob(lm, enc, noise, {("hidden", layer): [t]})

    ours, base = _median_pair(lambda: trace_fact(lm, FACT, settings), plain, repeats)
    return {"case": f"{lm.spec}, {len(cells)} cells", "value": round(ours / base, 3), "target": "<= 0.7"}


def _value_rows(lm: LoadedModel, layer: int, repeats: int) -> Row:
    from neuronmap.edit.algorithm.request import Request
    from neuronmap.edit.algorithm.values import _rows
    from neuronmap.edit.scoring import logits_at
    from neuronmap.models.output_hooks import OutputHooks, block_name, replay_blocks

    rows = _rows(lm, Request("{} is located in the city of", "Eiffel Tower", "Rome"), [""] * 11, ("{} is a",))
    proj, before = lm.adapter.names[layer], block_name(lm.adapter, layer - 1)
    delta = torch.zeros(lm.model.config.hidden_size, requires_grad=True)
    with torch.no_grad(), OutputHooks(lm.model, record=[before]) as clean:
        logits_at(lm.model, rows.ids, rows.mask, rows.read)

    def ours() -> None:
        with torch.enable_grad(), OutputHooks(lm.model, edits={proj: lambda out: out + delta}):
            with replay_blocks(lm.adapter, layer - 1, clean.outputs[before]):
                logits = logits_at(lm.model, rows.ids, rows.mask, rows.read)
            logits.float().log_softmax(-1)[..., 0].sum().backward()

    def plain() -> None:
        with torch.enable_grad(), OutputHooks(lm.model, edits={proj: lambda out: out + delta}):
            logits = lm.model(input_ids=rows.ids, attention_mask=rows.mask, use_cache=False).logits
            logits.float().log_softmax(-1)[..., 0].sum().backward()

    mine, base = _median_pair(ours, plain, repeats)
    return {"case": f"{lm.spec}, layer {layer}", "value": round(mine / base, 3), "target": "<= 0.9"}


def run(quick: bool = False) -> list[Row]:
    lm = load_model("tiny-llama" if quick else "smollm2-135m")
    layers = (0, 1) if quick else (2, 8, 14, 20, 26)
    out = []
    for bench, row, limit in (
        ("causal-trace", _trace_rows(lm, layers, 2 if quick else 3), 0.7),
        ("value-step", _value_rows(lm, 1 if quick else 6, 2 if quick else 5), 0.9),
    ):
        out.append({"benchmark": bench, **row, "unit": "x plain", "ok": row["value"] <= limit})
    if not quick:  # the README quotes the full run
        meta = {"when": time.strftime("%Y-%m-%d %H:%M"), "load_average": os.getloadavg()[0]}
        RESULT.write_text(json.dumps({"meta": meta, "rows": out}, indent=2) + "\n")
    return out
