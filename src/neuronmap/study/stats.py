"""Statistics of the study: Spearman correlations with bootstrap 95% intervals and p-values, corrected for the
number of tests (Benjamini-Hochberg), and the best-layer vs peak-layer comparison (Hase et al. 2023).

Pairs with a missing value are dropped per test; each row says how many pairs it used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

MIN_PAIRS = 5  # fewer pairs give no correlation (NaN)
LEVEL = 0.95
ALPHA = 0.05


def _pairs(x: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep]


def _rank_rows(a: np.ndarray) -> np.ndarray:
    """Average ranks along the last axis (ties share their mean rank, as Spearman needs)."""
    return stats.rankdata(a, axis=-1)


def _pearson_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a - a.mean(-1, keepdims=True)
    b = b - b.mean(-1, keepdims=True)
    den = np.sqrt((a * a).sum(-1) * (b * b).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (a * b).sum(-1) / np.where(den > 0, den, 1), np.nan)


def spearman(x: ArrayLike, y: ArrayLike) -> tuple[float, float, int]:
    """(rho, two-sided p-value, pairs): rho is the Pearson correlation of the ranks; p from scipy."""
    a, b = _pairs(x, y)
    n = len(a)
    if n < MIN_PAIRS or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan"), float("nan"), n
    rho = float(_pearson_rows(_rank_rows(a), _rank_rows(b)))
    return rho, float(stats.spearmanr(a, b).pvalue), n


def bootstrap_ci(
    x: ArrayLike, y: ArrayLike, n_boot: int = 2000, seed: int = 0, level: float = LEVEL
) -> tuple[float, float]:
    """Percentile bootstrap interval of Spearman's rho, resampling (x, y) pairs (vectorised; resamples with a
    constant side are left out).

    By hand rather than ``scipy.stats.bootstrap``: a resample whose x or y is constant has no rank correlation,
    and scipy's percentile interval turns NaN as soon as one resample is NaN (small studies with tied measures
    draw such resamples); here they are left out."""
    a, b = _pairs(x, y)
    n = len(a)
    if n < MIN_PAIRS or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    rhos = []
    for start in range(0, n_boot, 500):  # bounded memory: 500 resamples at a time
        idx = rng.integers(0, n, size=(min(500, n_boot - start), n))
        rhos.append(_pearson_rows(_rank_rows(a[idx]), _rank_rows(b[idx])))
    r = np.concatenate(rhos)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(r, [tail, 100 - tail])
    return float(low), float(high)


def correlations(
    table: pd.DataFrame,
    shape: Sequence[str],
    edit: Sequence[str],
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (shape measure, editability measure): pairs, rho, 95% CI, p, BH-adjusted p, significant."""
    rows = []
    for i, s in enumerate(shape):
        for j, e in enumerate(edit):
            rho, p, n = spearman(table[s], table[e])
            low, high = bootstrap_ci(table[s], table[e], n_boot, seed + 1000 * i + j)
            rows.append(
                {"shape": s, "editability": e, "n": n, "rho": rho, "ci_low": low, "ci_high": high, "p": p}
            )
    out = pd.DataFrame(rows)
    out["p_adjusted"] = adjust(out["p"].to_numpy())
    out["significant"] = (out["p_adjusted"] < ALPHA) & ((out["ci_low"] > 0) | (out["ci_high"] < 0))
    return out


def adjust(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (NaN stays NaN)."""
    p = np.asarray(p, dtype=float)
    out = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = stats.false_discovery_control(p[ok], method="bh")
    return out


def layer_agreement(
    peak: Sequence[float], best: Sequence[float], sweep: Sequence[int], n_boot: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Does the causal peak layer predict the best layer to edit? Spearman of the two (with CI), how often the
    best layer is the swept layer nearest the peak, and that rate if best and peak were independent (the product
    of their marginal frequencies)."""
    a, b = _pairs(peak, best)
    sweep_arr = np.asarray(sorted(sweep))
    rho, p, n = spearman(a, b)
    low, high = bootstrap_ci(a, b, n_boot, seed)
    out = {"n": n, "rho": rho, "ci_low": low, "ci_high": high, "p": p}
    if n == 0:
        return {**out, "match_rate": float("nan"), "chance_rate": float("nan"), "mean_abs_gap": float("nan")}
    nearest = sweep_arr[np.abs(a[:, None] - sweep_arr[None]).argmin(1)]
    match = float((nearest == b).mean())
    chance = float(sum((nearest == lay).mean() * (b == lay).mean() for lay in sweep_arr))
    # Exact one-sided binomial test of the match count against the chance rate.
    hits = int((nearest == b).sum())
    p_match = (
        float(stats.binomtest(hits, n, chance, alternative="greater").pvalue)
        if 0 < chance < 1
        else float("nan")
    )
    return {
        **out,
        "match_rate": match,
        "chance_rate": chance,
        "p_match": p_match,
        "mean_abs_gap": float(np.abs(a - b).mean()),
    }


def class_test(table: pd.DataFrame, by: str, value: str) -> dict[str, Any]:
    """Kruskal-Wallis test of ``value`` across the groups of ``by`` (groups with at least two facts), with each
    group's size and median."""
    groups = {
        str(k): g[value].dropna().to_numpy(dtype=float)
        for k, g in table.groupby(by)
        if g[value].notna().sum() >= 2
    }
    out: dict[str, Any] = {
        "groups": {k: {"n": int(v.size), "median": float(np.median(v))} for k, v in groups.items()},
        "statistic": float("nan"),
        "p": float("nan"),
    }
    if len(groups) >= 2 and np.ptp(np.concatenate(list(groups.values()))) > 0:
        res = stats.kruskal(*groups.values())
        out["statistic"], out["p"] = float(res.statistic), float(res.pvalue)
    return out


def by_group(
    x: ArrayLike, y: ArrayLike, groups: ArrayLike, min_size: int = 3, n_perm: int = 2000, seed: int = 0
) -> dict[str, float]:
    """Is an association one of the groups (the facts of a relation share both measures) or of the members within
    a group? Between: Spearman's rho of the groups' medians. Within: rho of each value's percentile rank among its
    group's (groups of at least ``min_size`` pairs), its p-value from permuting y within each group.

    The permutation by hand: scipy's ``permutation_test`` shuffles across all pairs and has no strata, and pooled
    within-group ranks are not independent pairs, so Spearman's own p would claim too much."""
    frame = pd.DataFrame({"x": np.asarray(x, float), "y": np.asarray(y, float), "g": np.asarray(groups)})
    frame = frame[np.isfinite(frame["x"]) & np.isfinite(frame["y"])]
    medians = frame.groupby("g")[["x", "y"]].median()
    between, between_p, n_groups = spearman(medians["x"], medians["y"])
    big = frame[frame.groupby("g")["g"].transform("size") >= min_size]
    ranks = big.groupby("g")[["x", "y"]].rank(pct=True)
    within, _, n_within = spearman(ranks["x"], ranks["y"])
    p = float("nan")
    if np.isfinite(within):
        rng = np.random.default_rng(seed)
        members = [np.flatnonzero(big["g"].to_numpy() == g) for g in big["g"].unique()]
        ry = ranks["y"].to_numpy()
        shuffled = np.tile(ry, (n_perm, 1))
        for idx in members:
            shuffled[:, idx] = rng.permuted(shuffled[:, idx], axis=1)
        rx = np.broadcast_to(
            _rank_rows(ranks["x"].to_numpy()), shuffled.shape
        )  # x is not permuted: ranked once
        null = _pearson_rows(rx, _rank_rows(shuffled))
        p = float((1 + np.sum(np.abs(null) >= abs(within) - 1e-12)) / (n_perm + 1))
    return {
        "groups": n_groups,
        "between_rho": between,
        "between_p": between_p,
        "within_rho": within,
        "within_p": p,
        "within_n": n_within,
        "within_groups": int(big["g"].nunique()),
    }
