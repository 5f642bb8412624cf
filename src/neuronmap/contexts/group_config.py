"""The context groupings and their parameters, free of numpy, pandas, spaCy and torch: a mistake in
``--by`` or in the sense options is reported before the grouping's libraries load (``contexts.grouping`` runs it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from neuronmap.errors import NeuronmapError

GROUPINGS = ("pos", "sense")


@dataclass(frozen=True)
class SenseParams:
    """How senses are found; recorded in run.json so that a repeated grouping is skipped."""

    layer: int | None = None  # None: the middle layer
    min_contexts: int = 4
    max_senses: int = 4
    min_silhouette: float = 0.4
    batch_size: int = 16
    seed: int = 0

    def validate(self) -> None:
        if self.min_contexts < 2:
            raise NeuronmapError("--min-contexts must be at least 2")
        if self.max_senses < 2:
            raise NeuronmapError("--max-senses must be at least 2")
        if not -1 <= self.min_silhouette <= 1:
            raise NeuronmapError("--min-silhouette must lie in [-1, 1]")
        if self.batch_size < 1:
            raise NeuronmapError("--batch-size must be at least 1")


def parse_groupings(by: str | Sequence[str]) -> list[str]:
    """``"pos,sense"`` or a sequence -> a checked list without repeats."""
    names = [b.strip() for b in (by.split(",") if isinstance(by, str) else by) if b.strip()]
    unknown = [b for b in names if b not in GROUPINGS]
    if not names or unknown:
        raise NeuronmapError(f"groupings are {' and/or '.join(GROUPINGS)} (got {by!r})")
    return list(dict.fromkeys(names))
