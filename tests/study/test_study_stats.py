"""Spearman, the bootstrap interval and the other tests of the study, against scipy."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from neuronmap.study.stats import adjust, bootstrap_ci, class_test, correlations, layer_agreement, spearman


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
