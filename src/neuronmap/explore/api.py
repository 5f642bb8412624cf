"""``explore``: the page (and optionally the figures) of a mapped run, and the few lines the CLI prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from neuronmap.explore.data import clusterability_line, load_view, top_specific
from neuronmap.explore.figures import FORMATS, write_figures
from neuronmap.explore.page import write_page
from neuronmap.trace.store import RunDir


@dataclass
class ExploreResult:
    page: Path | None
    figures: list[Path] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def explore(
    run: str | Path | RunDir,
    *,
    page: bool = True,
    figures: bool = False,
    formats: tuple[str, ...] = FORMATS,
    out: str | Path | None = None,
) -> ExploreResult:
    """Write ``RUN/explorer.html`` (or ``out``) and, with ``figures``, ``RUN/figures/``; the data are read once."""
    view = load_view(run)
    counts = view.summary.get("counts", {})
    summary = {
        "clusters": counts.get("clusters"),
        "merged_clusters": counts.get("merged_clusters"),
        "neurons": counts.get("neurons"),
        "contexts": len(view.contexts),
        "method": view.summary.get("method"),
        "scope": view.summary.get("scope"),
        "clusterability": clusterability_line(view.summary),
        "specific": top_specific(view),
        "groups": {column: len(values) for column, values in view.groups.items()},
    }
    return ExploreResult(
        page=write_page(run, out, view=view) if page else None,
        figures=write_figures(run, formats=formats, view=view) if figures else [],
        summary=summary,
    )
