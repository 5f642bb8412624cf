"""Shape measures on hand-made profiles: one peak against flat, one neuron against many."""

from __future__ import annotations

import math

import numpy as np
import pytest

from neuronmap.study.shape import Axes, classify, gini, layer_profile, mass_count, neuron_breadth

LAYERS = list(range(10))


def test_one_peak_against_flat():
    peak = layer_profile([0, 0, 0, 0.8, 0, 0, 0, 0, 0, 0], LAYERS)
    flat = layer_profile([0.2] * 10, LAYERS)
    assert peak["peak_layer"] == 3 and peak["peak_effect"] == pytest.approx(0.8)
    assert peak["entropy"] == pytest.approx(0.0) and peak["layers_above_half"] == 1
    assert flat["entropy"] == pytest.approx(1.0) and flat["layers_above_half"] == 10


def test_spread_between_the_two():
    wide = layer_profile([0, 0.1, 0.5, 1.0, 0.6, 0.2, 0, 0, 0, 0], LAYERS)
    assert wide["peak_layer"] == 3
    assert wide["layers_above_half"] == 3  # 0.5, 1.0, 0.6 are at or above half the peak
    p = np.array([0.1, 0.5, 1.0, 0.6, 0.2]) / 2.4
    assert wide["entropy"] == pytest.approx(-(p * np.log(p)).sum() / math.log(10))


def test_negative_effects_are_not_spread():
    out = layer_profile([-0.1, 0.4, -0.3], [0, 1, 2])
    assert out["peak_layer"] == 1 and out["entropy"] == pytest.approx(0.0)
    none = layer_profile([-0.1, -0.2], [0, 1])
    assert math.isnan(none["entropy"]) and math.isnan(none["layers_above_half"])


def test_mass_counts_and_gini():
    one = np.zeros(100)
    one[7] = -5.0  # the sign does not matter: |score| is the mass
    assert mass_count(one, 0.5) == 1 and mass_count(one, 0.8) == 1
    assert gini(one) == pytest.approx(0.99)
    even = np.ones(100)
    assert mass_count(even, 0.5) == 50 and mass_count(even, 0.8) == 80
    assert gini(even) == pytest.approx(0.0)
    assert mass_count(np.array([3.0, 1.0, 1.0, 1.0]), 0.5) == 1  # 3 of 6 is exactly half
    assert mass_count(np.zeros(4), 0.5) == 0 and math.isnan(gini(np.zeros(4)))


def test_neuron_breadth_narrow_against_thick():
    narrow = np.zeros((3, 50))
    narrow[1, 4] = 1.0
    thick = np.ones((3, 50))
    n, t = neuron_breadth(narrow), neuron_breadth(thick)
    assert n["neurons_80"] == 1 and t["neurons_80"] == 120
    assert n["gini"] > 0.9 and t["gini"] == pytest.approx(0.0)
    assert n["mass_top_layer_share"] == 1.0 and t["mass_top_layer_share"] == pytest.approx(1 / 3)


def test_classify():
    axes = Axes(multi_layer_min=3)
    assert classify(1, 5, axes, thick_min=10) == "narrow single-layer"
    assert classify(4, 50, axes, thick_min=10) == "thick multi-layer"
    assert classify(float("nan"), 5, axes, thick_min=10) == "unclassified"
    assert "at least 3" in axes.describe(10)
