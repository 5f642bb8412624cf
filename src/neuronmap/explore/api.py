"""``explore``: the page (and optionally the figures) of a mapped run, and the few lines the CLI prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from neuronmap.explore.data import clusterability_line, load_view, target_check, top_specific
from neuronmap.explore.figures import write_figures
from neuronmap.explore.page import write_page
from neuronmap.formats import FIGURE_FORMATS
from neuronmap.rundir import RunDir
from neuronmap.rundir.reprs import run_html


@dataclass
class ExploreResult:
    page: Path | None
    figures: list[Path] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    run: Path | None = None  # the run explored

    def _repr_html_(self) -> str:  # a notebook shows the run's summary and where the page went
        where = "" if self.page is None else f"<div>page: <code>{escape(str(self.page))}</code></div>"
        return (run_html(self.run, "neuronmap explore") if self.run is not None else "") + where


def explore(
    run: str | Path | RunDir,
    *,
    page: bool = True,
    figures: bool = False,
    formats: tuple[str, ...] = FIGURE_FORMATS,
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
        "targets": target_check(view),
    }
    return ExploreResult(
        page=write_page(run, out, view=view) if page else None,
        figures=write_figures(run, formats=formats, view=view) if figures else [],
        summary=summary,
        run=view.path,
    )
