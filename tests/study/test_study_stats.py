"""Spearman, the bootstrap interval and the other tests of the study, against scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from neuronmap.study.stats import (
    adjust,
    bootstrap_ci,
    by_group,
    class_test,
    correlations,
    layer_agreement,
    spearman,
)


@pytest.fixture
def pairs():
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    y = 0.6 * x + rng.normal(size=40)
    y[:5] = np.round(y[:5])  # some ties
    x[3] = np.nan  # a missing value drops its pair
    return x, y


def test_spearman_matches_scipy(pairs):
    x, y = pairs
    rho, p, n = spearman(x, y)
    keep = np.isfinite(x) & np.isfinite(y)
    ref = stats.spearmanr(x[keep], y[keep])
    assert n == 39
    assert rho == pytest.approx(ref.statistic, abs=1e-12) and p == pytest.approx(ref.pvalue)


def test_spearman_degenerate():
    assert math.isnan(spearman([1, 2, 3], [3, 2, 1])[0])  # too few pairs
    assert math.isnan(spearman([1.0] * 10, list(range(10)))[0])  # constant side


def test_bootstrap_matches_scipy(pairs):
    x, y = pairs
    keep = np.isfinite(x) & np.isfinite(y)
    ref = stats.bootstrap(
        (x[keep], y[keep]),
        lambda a, b: stats.spearmanr(a, b).statistic,
        paired=True,
        vectorized=False,
        n_resamples=1000,
        method="percentile",
        random_state=np.random.default_rng(0),
    ).confidence_interval
    low, high = bootstrap_ci(x, y, n_boot=4000, seed=1)
    assert low == pytest.approx(ref.low, abs=0.05) and high == pytest.approx(ref.high, abs=0.05)
    assert low < spearman(x, y)[0] < high
    assert bootstrap_ci(x, y, n_boot=500, seed=7) == bootstrap_ci(x, y, n_boot=500, seed=7)


def test_benjamini_hochberg():
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.2])
    out = adjust(p)
    assert math.isnan(out[3])
    # BH by hand: sorted 0.01, 0.03, 0.04, 0.2 with m = 4 -> 0.04, 0.0533, 0.0533, 0.2
    assert out[[0, 2, 1, 4]] == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])


def test_correlation_table_columns(pairs):
    x, y = pairs
    table = pd.DataFrame({"a": x, "b": -x, "e": y})
    out = correlations(table, ["a", "b"], ["e"], n_boot=300)
    assert list(out.columns) == [
        "shape",
        "editability",
        "n",
        "rho",
        "ci_low",
        "ci_high",
        "p",
        "p_adjusted",
        "significant",
    ]
    assert out["rho"].iloc[0] == pytest.approx(-out["rho"].iloc[1])
    assert bool(out["significant"].all())


def test_layer_agreement():
    peak = [2, 2, 6, 6, 11, 11, 14, 14]
    same = layer_agreement(peak, peak, [2, 6, 11, 14], n_boot=300)
    assert same["rho"] == pytest.approx(1.0) and same["match_rate"] == 1.0
    assert same["chance_rate"] == pytest.approx(0.25) and same["p_match"] < 0.01
    off = layer_agreement(peak, [14, 11, 2, 14, 6, 2, 11, 6], [2, 6, 11, 14], n_boot=300)
    assert off["match_rate"] == 0.0 and off["p_match"] == pytest.approx(1.0)


def test_class_test():
    table = pd.DataFrame({"c": ["a"] * 5 + ["b"] * 5 + ["z"], "v": [1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 3]})
    out = class_test(table, "c", "v")
    assert set(out["groups"]) == {"a", "b"}  # a group of one is left out
    assert out["p"] == pytest.approx(stats.kruskal([1, 2, 3, 4, 5], [10, 11, 12, 13, 14]).pvalue)


def test_by_group_splits_an_association_between_and_within_groups() -> None:
    """Between: scipy's Spearman of the groups' medians. Within: 1 when every group is concordant, and its
    permutation p the exact one: two groups of three, both concordant or both discordant in 2 of the 36 joint
    orders."""
    x = np.array([1.0, 2, 3, 10, 11, 12])
    y = np.array([5.0, 6, 7, 1, 2, 3])  # concordant within each group, the groups' levels opposite
    g = np.array(["a", "a", "a", "b", "b", "b"])
    out = by_group(x, y, g, n_perm=40_000, seed=1)
    medians = pd.DataFrame({"x": x, "y": y, "g": g}).groupby("g").median()
    assert out["groups"] == 2 and math.isnan(out["between_rho"])  # two medians: too few pairs for a rho
    assert out["within_rho"] == pytest.approx(1.0) and out["within_n"] == 6 and out["within_groups"] == 2
    assert out["within_p"] == pytest.approx(2 / 36, abs=0.006)
    many = by_group(
        np.r_[x, x + 20, x + 40], np.r_[y, y - 1, y - 2], np.r_[g, ["c"] * 3, ["d"] * 3, ["e"] * 6]
    )
    medians = pd.DataFrame({"x": np.r_[x, x + 20, x + 40], "y": np.r_[y, y - 1, y - 2],
                            "g": np.r_[g, ["c"] * 3, ["d"] * 3, ["e"] * 6]}).groupby("g").median()  # fmt: skip
    assert many["between_rho"] == pytest.approx(stats.spearmanr(medians["x"], medians["y"]).statistic)
    assert many["groups"] == 5


def test_by_group_sees_no_within_association_where_there_is_none() -> None:
    """x and y related only through their groups' levels: strong between, nothing within (a large p); a group
    smaller than ``min_size`` leaves the within test."""
    rng = np.random.default_rng(0)
    level = np.repeat(np.arange(12.0), 8)
    x, y = level + 0.1 * rng.normal(size=96), level + 0.1 * rng.normal(size=96)
    out = by_group(x, y, level.astype(int).astype(str))
    assert out["between_rho"] == pytest.approx(1.0) and out["between_p"] < 1e-6
    assert abs(out["within_rho"]) < 0.3 and out["within_p"] > 0.05
    small = by_group(x[:10], y[:10], np.r_[["a"] * 8, ["b"] * 2])
    assert small["within_n"] == 8 and small["within_groups"] == 1


def test_conclusion_splits_a_supported_pair_by_relation() -> None:
    """The conclusion says whether a supported association is the kind of fact's (between relations only) or
    holds among the facts of one relation too."""
    from neuronmap.study.conclusion import relations

    rng = np.random.default_rng(2)
    level = np.repeat(np.arange(8.0), 6)
    supported = pd.DataFrame({"shape": ["neurons_50"], "editability": ["flip_norm"], "rho": [0.5]})
    between_only = pd.DataFrame({"relation": level.astype(int).astype(str),
                                 "neurons_50": level + 0.1 * rng.normal(size=48),
                                 "flip_norm": level + 0.1 * rng.normal(size=48)})  # fmt: skip
    (line,) = relations(between_only, supported)
    assert line.startswith("neurons_50 vs flip_norm between and within relations: the 8 relations' medians")
    assert "carried by the kind of fact" in line
    within = between_only.assign(flip_norm=between_only["neurons_50"] + 0.01 * rng.normal(size=48))
    assert "holds among the facts of one relation too" in relations(within, supported)[0]
    offset = np.tile(np.arange(6.0), 8)  # within each relation, the flip norm falls as the breadth rises
    reverse = between_only.assign(neurons_50=level + 0.1 * offset, flip_norm=level - 0.1 * offset)
    assert "the association reverses" in relations(reverse, supported)[0]
    assert relations(between_only.assign(relation="one"), supported) == []  # one relation: nothing to split
