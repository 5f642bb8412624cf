"""The formats figures are written in: one list for every stage that draws, free of heavy imports, so that the
CLI refuses a bad ``--format`` before matplotlib or torch loads."""

from __future__ import annotations

from collections.abc import Sequence

from neuronmap.errors import NeuronmapError

FIGURE_FORMATS = ("png", "svg")


def check_figure_formats(formats: Sequence[str], option: str = "--format") -> tuple[str, ...]:
    """``formats`` as a tuple, each one of :data:`FIGURE_FORMATS` (an empty list: no figures)."""
    bad = [f for f in formats if f not in FIGURE_FORMATS]
    if bad:
        raise NeuronmapError(
            f"{option} takes {', '.join(FIGURE_FORMATS)} (comma-separated) or none, got {', '.join(map(repr, bad))}"
        )
    return tuple(formats)
