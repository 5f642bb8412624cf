"""The neurons stage's parameters and their checks, free of torch, numpy and pandas: a mistake in them is reported
before the model's libraries load."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from neuronmap.errors import NeuronmapError

HIST_BINS = 64  # bins of a neuron's activation histogram


@dataclass
class NeuronsConfig:
    """What decides the stage's tables."""

    top_tokens: int = 10  # promoted and suppressed tokens per neuron
    examples: int = 8  # top-activating examples per neuron
    before: int = 19  # tokens shown before an example's position (window = before + 1 + after)
    after: int = 4
    max_texts: int | None = None  # the first N documents (each-token) or contexts; None: all
    bins: int = HIST_BINS
    batch_size: int = field(default=8, metadata={"output": False})

    def validate(self) -> None:
        for name in ("top_tokens", "examples", "batch_size"):
            if getattr(self, name) < 1:
                raise NeuronmapError(f"--{name.replace('_', '-')} must be at least 1")
        if self.before < 0 or self.after < 0:
            raise NeuronmapError("the example window's sides must be >= 0")
        if self.max_texts is not None and self.max_texts < 1:
            raise NeuronmapError("--max-texts must be at least 1")

    def record(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "batch_size"}
