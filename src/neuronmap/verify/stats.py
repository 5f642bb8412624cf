"""The statistics of the causal check (numpy and scipy only, no torch).

For a cluster with neurons N and tokens T, each event e of the run gets an *effect*: log p(target | N ablated) -
log p(target | clean). Events whose token (the one the map linked them to) is in T are *in*, the others *out*.

- ``diff = mean(effect | in) - mean(effect | out)``: negative when removing the cluster hurts its own tokens more
  than the others, the claim the map makes about it.
- A 95% percentile bootstrap interval of ``diff``, in and out events resampled independently
  (``scipy.stats.bootstrap``, seeded).
- A null: ``diff`` for R random neuron sets with the cluster's number of neurons in each layer, on the same
  events. p = (1 + #{null diff <= diff}) / (R + 1), one-sided, so p >= 1 / (R + 1).
- p adjusted by Benjamini-Hochberg over the tested clusters (``scipy.stats.false_discovery_control``).
- A cluster *passes* when its adjusted p is at most ``ALPHA`` and its interval lies below 0.

The null sets are drawn from the map's other neurons of each layer (neurons that mattered for some prediction,
like the cluster's: a null of neurons that matter for nothing would be beaten by any cluster); where a layer has
too few of them, from all the layer's other neurons, and where even those are too few, from the whole layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.stats

ALPHA = 0.05
CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 9999
POOLS = ("map", "layer", "layer with own")  # where null neurons come from, narrowest first

NeuronSet = dict[int, np.ndarray]  # layer -> sorted neuron indices


def neuron_set(layers: np.ndarray, neurons: np.ndarray) -> NeuronSet:
    """``{layer: sorted neurons}`` of parallel arrays."""
    layers, neurons = np.asarray(layers, np.int64), np.asarray(neurons, np.int64)
    return {int(layer): np.sort(neurons[layers == layer]) for layer in np.unique(layers)}


def draw_null_sets(
    own: NeuronSet, pool: NeuronSet, d_mlp: int, draws: int, rng: np.random.Generator
) -> tuple[list[NeuronSet], str]:
    """``draws`` random sets with ``own``'s number of neurons in each layer, none of ``own``'s where possible:
    from ``pool`` (the map's neurons) of the layer, else the layer's other neurons, else the whole layer. Returns
    the sets and the widest pool a layer needed (one of ``POOLS``)."""
    candidates, level = {}, 0
    for layer, members in own.items():
        k = len(members)
        for i, source in enumerate(
            (pool.get(layer, np.zeros(0, np.int64)), np.arange(d_mlp), None)
        ):  # fmt: skip
            found = np.arange(d_mlp) if source is None else np.setdiff1d(source, members)
            if len(found) >= k:
                candidates[layer], level = found, max(level, i)
                break
    sets = [
        {
            layer: np.sort(rng.choice(found, len(own[layer]), replace=False))
            for layer, found in candidates.items()
        }
        for _ in range(draws)
    ]
    return sets, POOLS[level]


def sample_events(
    inside: np.ndarray, max_events: int | None, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """(in, out) event indices within a budget of ``max_events``: at least half of it for in-events when there are
    that many (all of the room out-events leave), the rest out-events; seeded samples without replacement, sorted."""
    inner, outer = np.flatnonzero(inside), np.flatnonzero(~inside)
    if max_events is None:
        return inner, outer
    n_in = min(len(inner), max(max_events - len(outer), max_events // 2))
    n_out = min(len(outer), max_events - n_in)
    pick = lambda x, n: x if n >= len(x) else np.sort(rng.choice(x, n, replace=False))  # noqa: E731
    return pick(inner, n_in), pick(outer, n_out)


def _mean_difference(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(a, axis=axis) - np.mean(b, axis=axis)


@dataclass
class ClusterTest:
    effect_in: float
    effect_out: float
    diff: float
    ci_low: float
    ci_high: float
    null_mean: float
    null_sd: float
    p: float


def cluster_test(
    effect_in: np.ndarray, effect_out: np.ndarray, null_diffs: np.ndarray, rng: np.random.Generator
) -> ClusterTest:
    """The statistics of one cluster (module docstring); NaN where it has fewer than 2 in- or out-events."""
    nan = float("nan")
    null = np.asarray(null_diffs, np.float64)
    null_mean = float(null.mean()) if len(null) else nan
    null_sd = float(null.std(ddof=1)) if len(null) > 1 else nan
    if len(effect_in) < 2 or len(effect_out) < 2:
        mean_in = float(np.mean(effect_in)) if len(effect_in) else nan
        mean_out = float(np.mean(effect_out)) if len(effect_out) else nan
        return ClusterTest(mean_in, mean_out, mean_in - mean_out, nan, nan, null_mean, null_sd, nan)
    diff = float(_mean_difference(effect_in, effect_out))
    if np.ptp(effect_in) == 0 and np.ptp(effect_out) == 0:  # no spread: every resample gives diff
        low = high = diff
    else:
        ci = scipy.stats.bootstrap(
            (effect_in, effect_out),
            _mean_difference,
            n_resamples=BOOTSTRAP_RESAMPLES,
            confidence_level=CONFIDENCE,
            method="percentile",
            vectorized=True,
            rng=rng,
        ).confidence_interval
        low, high = float(ci.low), float(ci.high)
    p = (1 + int((null <= diff).sum())) / (len(null) + 1) if len(null) else nan
    return ClusterTest(
        float(np.mean(effect_in)), float(np.mean(effect_out)), diff, low, high, null_mean, null_sd, p
    )


def adjust(p: Sequence[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p of the finite values; NaN stays NaN (untested clusters)."""
    values = np.asarray(p, np.float64)
    out = np.full(len(values), np.nan)
    ok = np.isfinite(values)
    if ok.any():
        out[ok] = scipy.stats.false_discovery_control(values[ok])
    return out


def passes(table: pd.DataFrame, alpha: float = ALPHA) -> np.ndarray:
    """The pass rule: adjusted p <= ``alpha`` and the bootstrap interval of ``diff`` below 0."""
    adjusted = table["p_adjusted"].to_numpy(np.float64)
    high = table["ci_high"].to_numpy(np.float64)
    return np.isfinite(adjusted) & (adjusted <= alpha) & np.isfinite(high) & (high < 0)
