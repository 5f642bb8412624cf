"""The Context record: one prompt and the string the model should predict after it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Context:
    """One prompt to trace.

    ``target`` is kept exactly as the user wrote it (no space added or stripped): the tracer owns
    leading-space handling. ``None`` means the model's own top prediction becomes the target. ``groups``
    holds every other field (relation, label, pos, ...), which becomes a column of ``contexts.parquet``
    for grouping results later.
    """

    text: str
    target: str | None
    subject: str | None = None
    groups: dict[str, Any] = field(default_factory=dict)
