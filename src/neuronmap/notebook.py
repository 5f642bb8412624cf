"""Runs in a notebook: ``open_run(path)`` gives a :class:`Run` whose tables are labelled DataFrames, whose
``_repr_html_`` is the run's summary, and whose page shows inline (a sandboxed ``<iframe srcdoc>``).

A ``Run`` reads the run directory when asked (nothing is cached but the explore view, which is read again when
``run.json`` changes), so it follows the stages run on it after it was opened. It never loads a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from neuronmap.errors import NeuronmapError
from neuronmap.explore.data import RunView, load_view
from neuronmap.explore.page import build_payload, render_page, write_page
from neuronmap.graph.api import MapResult
from neuronmap.rundir import GRAPH, RunDir, read_parquet
from neuronmap.rundir.reprs import InlineHTML, run_html

__all__ = ["InlineHTML", "Run", "open_run"]


class Run:
    """A run directory, for a notebook. ``open_run`` makes one."""

    def __init__(self, path: str | Path | RunDir) -> None:
        self.rundir = path if isinstance(path, RunDir) else RunDir(path)
        self.rundir.manifest()  # not a run: one line that says so
        self._view: tuple[int, RunView] | None = None

    @property
    def path(self) -> Path:
        return self.rundir.path

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"

    def _repr_html_(self) -> str:
        return run_html(self.path)

    # -- what run.json says ---------------------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        return self.rundir.manifest()

    @property
    def model(self) -> dict[str, Any]:
        """The traced model as run.json records it (spec, arch, n_layers, d_mlp, weights hash)."""
        return dict(self.manifest.get("model") or {})

    @property
    def stages(self) -> dict[str, str]:
        """Each stage run on it, with its status (``complete``, ``running``, ``failed``)."""
        return {name: (s or {}).get("status", "?") for name, s in self.manifest["stages"].items()}

    @property
    def summary(self) -> dict[str, Any]:
        """The map's ``graph/summary.json`` once mapped, else the trace's summary."""
        if self.stages.get("map") == "complete":
            return self.map.summary
        return dict(self.rundir.require_stage("trace").get("summary") or {})

    # -- tables ---------------------------------------------------------------------------------------------
    @property
    def contexts(self) -> pd.DataFrame:
        """``contexts.parquet``: one row per kept context (each-token runs: per event)."""
        return self.rundir.contexts()

    @property
    def scores(self) -> pd.DataFrame:
        """``scores.parquet``: context_id, layer, neuron, score (top-k per context)."""
        return self.rundir.scores()

    def _mapped(self) -> Path:
        """The map's folder; a run without a map is a one-line error."""
        if self.stages.get("map") != "complete":
            raise NeuronmapError(
                f"{self.path}: has no map yet; run `neuronmap map {self.path}` (map_run) first"
            )
        return self.path / GRAPH

    @property
    def map(self) -> MapResult:
        """The map's tables (``graph/``) and summary."""
        self._mapped()
        return MapResult.load(self.rundir)

    @property
    def clusters(self) -> pd.DataFrame:
        """``graph/clusters.parquet``: one row per cluster, with its merged cluster, size, layers and tokens."""
        return read_parquet(self._mapped() / "clusters.parquet")

    @property
    def neurons(self) -> pd.DataFrame:
        """``graph/neurons.parquet``: one row per neuron of the graph, with its cluster."""
        return read_parquet(self._mapped() / "neurons.parquet")

    def view(self) -> RunView:
        """What the page shows (``explore.load_view``), read again when run.json has changed."""
        stamp = self.rundir.manifest_path.stat().st_mtime_ns
        if self._view is None or self._view[0] != stamp:
            self._view = (stamp, load_view(self.rundir))
        return self._view[1]

    @property
    def groups(self) -> dict[str, list[str]]:
        """The context groups (columns of contexts.parquet the page offers) and their values."""
        return self.view().groups

    def group_matrix(self, column: str, partition: str = "cluster") -> pd.DataFrame:
        """Each value of the context group ``column`` (rows, most frequent first) and its share of score mass per
        cluster (columns: cluster ids of ``partition``, ``cluster`` or ``merged``); rows sum to 1."""
        return self.view().group_frame(partition, column)

    # -- the page -------------------------------------------------------------------------------------------
    def page(self, inline: bool = True, height: int = 720) -> InlineHTML | Path:
        """The explorer page: shown inline (an object whose ``_repr_html_`` is a sandboxed ``<iframe srcdoc>``
        of the page, written nowhere), or with ``inline=False`` written to ``RUN/explorer.html`` (its path)."""
        view = self.view()
        if not inline:
            return write_page(self.rundir, view=view)
        return InlineHTML(
            render_page(build_payload(view)), height=height, title=f"neuronmap · {self.path.name}"
        )


def open_run(run: str | Path | RunDir | Any) -> Run:
    """The run at a path, or of a stage's result (``trace_run``'s, ``map_run``'s or ``explore``'s)."""
    if isinstance(run, Run):
        return run
    if isinstance(run, str | Path | RunDir):
        return Run(run)
    if isinstance(getattr(run, "run", None), RunDir | Path):  # TraceResult, ExploreResult
        return Run(run.run)
    if isinstance(run, MapResult):
        return Run(run.path.parent)
    raise NeuronmapError(
        f"open_run takes a run directory or a stage's result (trace_run, map_run, explore), got {type(run).__name__}"
    )
