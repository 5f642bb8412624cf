"""Heatmaps of causal traces, drawn as ROME's paper draws them (one panel per state kind)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from neuronmap.edit.experiments.causal_trace import POSITION_CLASSES, FactTrace
from neuronmap.errors import NeuronmapError
from neuronmap.formats import FIGURE_FORMATS, check_figure_formats
from neuronmap.models.output_hooks import KINDS

if TYPE_CHECKING:  # matplotlib is imported only when figures are drawn
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_CMAPS = {"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}
_TITLES = {"hidden": "single restored layer", "mlp": "MLP, window", "attn": "attention, window"}


def _figure(n_panels: int, rows: int) -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise NeuronmapError("figures need matplotlib: pip install matplotlib") from None
    return Figure(figsize=(4.2 * n_panels, 0.9 + 0.28 * rows), layout="constrained")


def _save(fig: Figure, stem: Path, formats: Sequence[str]) -> list[Path]:
    check_figure_formats(formats, "figure formats")
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        fig.savefig(path, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
        paths.append(path)
    return paths


def _panel(
    ax: Axes, grid: pd.DataFrame, kind: str, labels: list[str], title: str, colorbar_label: str, fig: Figure
) -> None:
    image = ax.imshow(grid.to_numpy(), aspect="auto", cmap=_CMAPS[kind], interpolation="nearest")
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("layer")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label=colorbar_label, shrink=0.8)


def fact_heatmap(trace: FactTrace, stem: str | Path, formats: Sequence[str] = FIGURE_FORMATS) -> list[Path]:
    """p(target) with each (position, layer) restored; subject tokens are starred."""
    kinds = [k for k in KINDS if k in set(trace.table["kind"])]
    fig = _figure(len(kinds), len(trace.tokens))
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    a, b = trace.span
    labels = [f"{tok!r}*" if a <= i < b else repr(tok) for i, tok in enumerate(trace.tokens)]
    for ax, kind in zip(axes, kinds, strict=True):
        grid = trace.table[trace.table["kind"] == kind].pivot(
            index="position", columns="layer", values="effect"
        )
        _panel(ax, grid, kind, labels, _TITLES[kind], f"p({trace.target.strip()})", fig)
    fig.suptitle(
        f"{trace.fact.prompt.replace('{}', trace.fact.subject)} -> {trace.target.strip()!r}  "
        f"(clean p={trace.p_clean:.3f}, corrupted p={trace.p_corrupted:.3f})",
        fontsize=9,
    )
    return _save(fig, Path(stem), formats)


def average_heatmap(
    average: pd.DataFrame, stem: str | Path, n_facts: int, formats: Sequence[str] = FIGURE_FORMATS
) -> list[Path]:
    """Average indirect effect by position class and layer, over a set of facts (ROME's figure 2)."""
    kinds = [k for k in KINDS if k in set(average["kind"])]
    classes = [c for c in POSITION_CLASSES if c in set(average["position_class"])]
    fig = _figure(len(kinds), len(classes))
    axes = fig.subplots(1, len(kinds), squeeze=False)[0]
    for ax, kind in zip(axes, kinds, strict=True):
        sel = average[average["kind"] == kind]
        grid = sel.pivot(index="position_class", columns="layer", values="indirect").reindex(classes)
        _panel(ax, grid, kind, classes, _TITLES[kind], "average indirect effect", fig)
    fig.suptitle(f"causal trace averaged over {n_facts} facts", fontsize=9)
    return _save(fig, Path(stem), formats)
