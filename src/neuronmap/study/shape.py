"""Shape measures of a fact's representation: how its causal effect spreads over layers, and how many neurons
carry its attribution. Plain numpy on profiles, so they can be checked on hand-made inputs.

- Layer profile (an effect per traced layer, e.g. the indirect effect of restoring the MLP output at the last
  subject token): the peak layer and effect; the spread as the normalised entropy of the positive part of the
  profile (0: all of it in one layer, 1: flat) and the number of layers at or above half the peak.
- Neuron breadth (an attribution score per neuron): how many neurons, taken by decreasing |score|, carry 50% and
  80% of the total |score| mass, and the Gini coefficient of |score| (0: every neuron equal, 1: one neuron).
- Two axes: single-layer / multi-layer from the layer count above half the peak, narrow / thick from the neuron
  count carrying 80% of the mass; the thresholds are parameters, stated in the report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def layer_profile(effects: Sequence[float], layers: Sequence[int]) -> dict[str, float]:
    """Peak layer and effect, entropy spread and layers above half the peak of a per-layer effect profile.

    A profile with no positive effect has no peak: its spread measures are NaN."""
    e = np.asarray(effects, dtype=float)
    lay = np.asarray(layers)
    if e.shape != lay.shape or e.size == 0:
        raise ValueError("one effect per layer is needed")
    i = int(np.nanargmax(e))
    peak = float(e[i])
    out = {"peak_layer": float(lay[i]), "peak_effect": peak}
    pos = np.clip(np.nan_to_num(e), 0.0, None)
    if peak <= 0 or pos.sum() <= 0:
        return {**out, "entropy": float("nan"), "layers_above_half": float("nan")}
    p = pos / pos.sum()
    nz = p[p > 0]
    entropy = float(-(nz * np.log(nz)).sum() / np.log(len(e))) if len(e) > 1 else 0.0
    return {**out, "entropy": entropy, "layers_above_half": float((e >= peak / 2).sum())}


def mass_count(scores: np.ndarray, share: float) -> int:
    """The fewest neurons (by decreasing |score|) whose |score| sums to at least ``share`` of the total."""
    a = np.sort(np.abs(np.nan_to_num(np.asarray(scores, dtype=float)).ravel()))[::-1]
    total = a.sum()
    if total <= 0:
        return 0
    return int(np.searchsorted(np.cumsum(a), share * total - 1e-12 * total) + 1)


def gini(scores: np.ndarray) -> float:
    """Gini coefficient of |scores| (0: all equal; (n - 1) / n: all mass on one neuron)."""
    a = np.sort(np.abs(np.nan_to_num(np.asarray(scores, dtype=float)).ravel()))
    n, total = a.size, a.sum()
    if n == 0 or total <= 0:
        return float("nan")
    ranks = np.arange(1, n + 1)
    return float((2 * (ranks * a).sum()) / (n * total) - (n + 1) / n)


def neuron_breadth(scores: np.ndarray) -> dict[str, float]:
    """Breadth of an attribution array (layers, neurons): counts carrying 50% / 80% of the mass, overall Gini,
    the mean per-layer Gini, and the layer holding most of the mass with its own counts."""
    s = np.abs(np.nan_to_num(np.asarray(scores, dtype=float)))
    if s.ndim == 1:
        s = s[None]
    per_layer = s.sum(1)
    top = int(per_layer.argmax())
    ginis = [gini(row) for row in s if row.sum() > 0]
    return {
        "neurons_50": float(mass_count(s, 0.5)),
        "neurons_80": float(mass_count(s, 0.8)),
        "gini": gini(s),
        "gini_layer_mean": float(np.mean(ginis)) if ginis else float("nan"),
        "mass_top_layer_share": float(per_layer[top] / per_layer.sum())
        if per_layer.sum() > 0
        else float("nan"),
        "top_layer_neurons_80": float(mass_count(s[top], 0.8)),
    }


@dataclass(frozen=True)
class Axes:
    """Thresholds of the two-axis classification."""

    multi_layer_min: float = 3  # layers at or above half the peak (MLP profile) for "multi-layer"
    thick_min: float | None = (
        None  # neurons carrying 80% of the mass for "thick"; None: the median over facts
    )

    def describe(self, thick_min: float) -> str:
        return (
            f"multi-layer: at least {self.multi_layer_min:g} traced layers with an MLP effect at or above half "
            f"the peak, else single-layer; thick: at least {thick_min:g} neurons carry 80% of the attribution "
            "mass where the fact lives, else narrow"
        )


def classify(layers_above_half: float, neurons_80: float, axes: Axes, thick_min: float) -> str:
    """``narrow|thick x single-layer|multi-layer``, or ``unclassified`` when a measure is missing."""
    if not (np.isfinite(layers_above_half) and np.isfinite(neurons_80)):
        return "unclassified"
    width = "thick" if neurons_80 >= thick_min else "narrow"
    depth = "multi-layer" if layers_above_half >= axes.multi_layer_min else "single-layer"
    return f"{width} {depth}"
