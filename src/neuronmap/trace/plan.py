"""Batches sized from a memory estimate before any of them runs.

Each method's passes are priced with ``models.memory.Footprint``: attribution is one pass whose backward reaches
the lowest traced layer; integrated gradients runs ``steps`` copies of a batch at once; ablation and causal
tracing first attribute, then run many copies of one context without gradients, reading logits at every
position. A batch of ``--batch-size`` contexts that would take more than the budget is split in halves until it
fits, and the copies run per forward (``chunk``) shrink the same way; a context that alone would not fit is
refused with one line before any model work. A batch that fits is never split, so a trace whose batches fit gives
the same bytes as before; a split batch is padded less, which can move scores in their last bits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from neuronmap.errors import NeuronmapError
from neuronmap.models.memory import Budget, Footprint, format_bytes

if TYPE_CHECKING:
    from neuronmap.trace.config import TraceConfig


@dataclass(frozen=True)
class Batches:
    """The plan: consecutive slices of the contexts, and the copies per forward of ablation and causal."""

    slices: list[range]
    chunk: int

    def by_part(self, part_size: int) -> dict[int, list[range]]:
        """The batches of each part (a batch lies within one part)."""
        parts: dict[int, list[range]] = {}
        for batch in self.slices:
            parts.setdefault(batch.start // part_size, []).append(batch)
        return parts

    def record(self, budget: Budget) -> dict[str, object]:
        """The plan as run.json keeps it: under the trace's ``timing``, since it depends on the memory free."""
        return {"budget": budget.bytes, "rule": budget.rule, "batches": len(self.slices), "chunk": self.chunk}


def method_bytes(
    fp: Footprint, config: TraceConfig, layers: list[int], rows: int, tokens: int, targets: int, chunk: int
) -> int:
    """Estimated peak bytes (beyond the weights' own) of scoring ``rows`` contexts padded to ``tokens``."""
    grad_layers = fp.n_layers - min(layers)
    per_position = rows * tokens * len(layers) * fp.d_mlp * 4  # one (rows, T, L, d) float32 tensor
    attribute = fp.pass_bytes(rows, tokens, grad_layers, targets) + (
        3 * per_position if config.per_position else 0
    )
    if config.method == "attribution":
        return attribute
    if config.method == "integrated-gradients":
        replayed = rows * tokens * len(layers) * fp.d_model * fp.element
        return fp.pass_bytes(rows * config.steps, tokens, grad_layers, targets) + replayed
    # ablation: chunk + 1 copies; causal: chunk // samples groups of samples copies, after a per-position attribution
    copies = chunk + 1 if config.method == "ablation" else config.samples * max(1, chunk // config.samples)
    forward = fp.pass_bytes(copies, tokens, 0, tokens)
    if config.method == "causal":
        return max(
            fp.pass_bytes(rows, tokens, grad_layers, targets) + 3 * per_position, forward + per_position
        )
    return max(attribute, forward)


def plan_batches(
    lengths: list[tuple[int, int]],
    config: TraceConfig,
    cost: Callable[[int, int, int, int], int],
    budget: Budget,
    where: Callable[[int], str],
) -> Batches:
    """Slices of at most ``config.batch_size`` contexts whose estimate fits ``budget``, each within one part of
    ``config.part_size`` (batches start where parts start). ``lengths`` holds each context's (input tokens, target
    tokens); ``cost(rows, tokens, targets, chunk)`` prices a batch."""
    chunk = config.batch_size * 8  # the copies per forward when memory is no constraint
    if config.method in ("ablation", "causal"):
        longest = max(lengths, key=lambda n: n[0])
        while chunk > 1 and cost(1, *longest, chunk) > budget.bytes:
            chunk //= 2
    for i, (tokens, targets) in enumerate(lengths):
        need = cost(1, tokens, targets, chunk)
        if need > budget.bytes:
            raise _too_big(where(i), tokens, need, config, budget)
    slices: list[range] = []
    for part in range(0, len(lengths), config.part_size):
        end = min(len(lengths), part + config.part_size)
        for start in range(part, end, config.batch_size):
            slices += _fit(range(start, min(end, start + config.batch_size)), lengths, cost, budget, chunk)
    return Batches(slices, chunk)


def _fit(
    ids: range,
    lengths: list[tuple[int, int]],
    cost: Callable[[int, int, int, int], int],
    budget: Budget,
    chunk: int,
) -> list[range]:
    tokens = max(lengths[i][0] for i in ids)
    targets = max(lengths[i][1] for i in ids)
    if len(ids) == 1 or cost(len(ids), tokens, targets, chunk) <= budget.bytes:
        return [ids]
    half = ids.start + len(ids) // 2
    return _fit(range(ids.start, half), lengths, cost, budget, chunk) + _fit(
        range(half, ids.stop), lengths, cost, budget, chunk
    )


def _too_big(where: str, tokens: int, need: int, config: TraceConfig, budget: Budget) -> NeuronmapError:
    hint = (
        "higher --layers (the backward pass stops at the lowest) or " if config.method != "ablation" else ""
    )
    return NeuronmapError(
        f"{where}: {tokens} tokens need about {format_bytes(need)} for {config.method}, more than the "
        f"{budget.describe()}; try {hint}a larger --max-memory"
    )
