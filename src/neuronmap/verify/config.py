"""The causal check's parameters and their checks, free of torch, numpy and pandas: a mistake in them is reported
before the libraries of the check load."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from neuronmap.errors import NeuronmapError

ABLATE = ("zero", "mean")


@dataclass(frozen=True)
class VerifyConfig:
    """Parameters of the check, one per CLI option (see ``neuronmap verify --help``)."""

    clusters: tuple[int, ...] | None = None  # None: every cluster of at least min_size neurons
    ablate: str = "zero"
    null_samples: int = 49
    max_events: int | None = 256
    tokens: int = 10
    min_size: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.clusters is not None:
            object.__setattr__(self, "clusters", tuple(sorted({int(c) for c in self.clusters})))
        if self.ablate not in ABLATE:
            raise NeuronmapError(f"--ablate {self.ablate!r}: expected one of {', '.join(ABLATE)}")
        for name, value, low in (("null_samples", self.null_samples, 1), ("tokens", self.tokens, 1),
                                 ("min_size", self.min_size, 1), ("seed", self.seed, 0)):  # fmt: skip
            if value < low:
                raise NeuronmapError(f"--{name.replace('_', '-')} {value!r}: must be >= {low}")
        if self.max_events is not None and self.max_events < 4:
            raise NeuronmapError(f"--max-events {self.max_events!r}: must be >= 4 (2 in- and 2 out-events)")

    def record(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self)))
