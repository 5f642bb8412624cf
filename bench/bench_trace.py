"""Trace-method speed as ratios to bare passes over the same batches, measured in one process.

- attribution: time per batch against one bare forward + backward (gradient with respect to the input
  embeddings, the least a gradient method can do). Target: at most 1.15x.
- integrated-gradients: time against ``steps x layers`` forward + backward passes (one per layer on the batch
  repeated ``steps`` times). Target: at most 1.2x.

Baseline and method runs alternate and the median of the repeats is used, since this machine is shared.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from neuronmap.contexts.loaders import load_contexts
from neuronmap.models.loader import LoadedModel, load_model
from neuronmap.trace.batch import Batch, collate, encode, target_logprob
from neuronmap.trace.methods import attribution, integrated_gradients

Row = dict[str, object]


def _batches(lm: LoadedModel, n_batches: int, batch_size: int) -> list[Batch]:
    contexts = load_contexts("builtin:facts", limit=n_batches * batch_size).contexts
    encoded = [encode(lm.tokenizer, c.text, c.target or "", c.subject) for c in contexts]
    return [
        collate(encoded[i : i + batch_size], lm.tokenizer.pad_token_id, lm.device)
        for i in range(0, len(encoded), batch_size)
    ]


def bare_forward_backward(lm: LoadedModel, batch: Batch) -> None:
    embeds = lm.adapter.input_embeddings()(batch.input_ids).detach().requires_grad_(True)
    with torch.enable_grad():
        logits = lm.model(inputs_embeds=embeds, attention_mask=batch.attention_mask, use_cache=False).logits
        torch.autograd.grad(target_logprob(logits, batch).sum(), embeds)


def _timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _alternating(a: Callable[[], None], b: Callable[[], None], repeats: int) -> tuple[float, float]:
    a(), b()  # warm-up
    ta, tb = [], []
    for _ in range(repeats):
        ta.append(_timed(a))
        tb.append(_timed(b))
    return statistics.median(ta), statistics.median(tb)


def bench_model(
    name: str, n_batches: int, batch_size: int, ig_layers: list[int] | None, steps: int, repeats: int
) -> list[Row]:
    lm = load_model(name)
    batches = _batches(lm, n_batches, batch_size)
    layers = list(range(lm.n_layers))
    n_contexts = sum(len(b) for b in batches)

    def method() -> None:
        for batch in batches:
            attribution(lm, batch, layers)

    def baseline() -> None:
        for batch in batches:
            bare_forward_backward(lm, batch)

    t_base, t_attr = _alternating(baseline, method, repeats)
    ig_layers = layers if ig_layers is None else ig_layers
    ig_batch = batches[0]
    repeated = ig_batch.repeat(steps)

    def ig() -> None:
        integrated_gradients(lm, ig_batch, ig_layers, steps=steps)

    def ig_baseline() -> None:
        for _ in ig_layers:
            bare_forward_backward(lm, repeated)

    t_ig_base, t_ig = _alternating(ig_baseline, ig, max(1, repeats // 2))
    return [
        _row("attribution", f"{name}: contexts/s", n_contexts / t_attr, "contexts/s", "", True),
        _row(
            "attribution",
            f"{name}: time / bare fwd+bwd",
            t_attr / t_base,
            "ratio",
            "<= 1.15",
            t_attr / t_base <= 1.15,
        ),
        _row(
            "integrated-gradients",
            f"{name}: time / ({steps} steps x {len(ig_layers)} layers fwd+bwd)",
            t_ig / t_ig_base,
            "ratio",
            "<= 1.2",
            t_ig / t_ig_base <= 1.2,
        ),
    ]


def _row(benchmark: str, case: str, value: float, unit: str, target: str, ok: bool) -> Row:
    return {
        "benchmark": benchmark,
        "case": case,
        "value": round(value, 4),
        "unit": unit,
        "target": target,
        "ok": ok,
    }


def run(quick: bool = False) -> list[Row]:
    rows = bench_model(
        "tiny-gpt2", n_batches=8, batch_size=8, ig_layers=None, steps=20, repeats=5 if quick else 11
    )
    rows += bench_model(
        "smollm2-135m",
        n_batches=2 if quick else 4,
        batch_size=8,
        ig_layers=[0, 15, 29] if quick else [0, 5, 10, 15, 20, 25, 29],
        steps=20,
        repeats=3 if quick else 5,
    )
    return rows


if __name__ == "__main__":
    from bench.__main__ import print_table

    print_table(run())
