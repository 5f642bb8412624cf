"""Filan et al.'s shuffle nulls, the p and z formulas, and stability."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from neuronmap.graph.clusterability import null_statistics, shuffle_bipartite, significance, stability


def _layered(seed: int = 0):
    rng = np.random.default_rng(seed)
    matrix = sp.random_array((60, 40), density=0.2, format="csr", rng=rng) + 0.0
    layers = np.repeat([0, 1, 2], 20)
    return sp.csr_array(matrix), layers


def _layer_weights(matrix, layers, layer):
    return np.sort(matrix[layers == layer].data)


def test_edges_null_permutes_weights_within_layers_and_keeps_the_topology():
    matrix, layers = _layered()
    null = shuffle_bipartite(matrix, layers, "edges", np.random.default_rng(1))
    assert ((null != 0) != (matrix != 0)).nnz == 0
    assert not np.array_equal(null.data, matrix.data)
    for layer in range(3):
        np.testing.assert_array_equal(
            _layer_weights(null, layers, layer), _layer_weights(matrix, layers, layer)
        )


def test_pairs_null_moves_edges_to_random_pairs_of_the_same_layer():
    matrix, layers = _layered()
    null = shuffle_bipartite(matrix, layers, "pairs", np.random.default_rng(1))
    assert ((null != 0) != (matrix != 0)).nnz > 0
    for layer in range(3):
        np.testing.assert_array_equal(
            _layer_weights(null, layers, layer), _layer_weights(matrix, layers, layer)
        )


def test_significance_follows_filan():
    result = significance(1.0, np.array([0.2, 0.4, 1.0, 0.6]), higher_is_better=True)
    null = np.array([0.2, 0.4, 1.0, 0.6])
    assert result["r"] == 1 and result["p"] == pytest.approx(2 / 5)
    assert result["z"] == pytest.approx((1.0 - null.mean()) / null.std(ddof=1))
    lower = significance(0.1, np.array([0.5, 0.7, np.nan]), higher_is_better=False)  # n-cut: lower is better
    assert lower["n"] == 2 and lower["r"] == 0 and lower["p"] == pytest.approx(1 / 3) and lower["z"] > 0
    assert significance(1.0, np.array([0.5, 0.5]), higher_is_better=True)["z"] is None


def test_null_samples_are_seeded_per_sample():
    matrix, layers = _layered()

    def statistic(null, seed):
        return np.array([null[:20].sum(), seed])

    first = null_statistics(matrix, layers, statistic, kinds=["pairs"], n_samples=3, seed=[5, 0])
    again = null_statistics(matrix, layers, statistic, kinds=["pairs"], n_samples=3, seed=[5, 0])
    np.testing.assert_array_equal(first["pairs"], again["pairs"])
    assert first["pairs"].shape == (3, 2) and len(set(first["pairs"][:, 1])) == 3


def test_stability_is_the_adjusted_rand_index():
    reference = np.array([0, 0, 1, 1, 2, 2])
    result = stability(reference, [reference[::-1], np.array([0, 1, 0, 1, 0, 1])], [1, 2])
    assert result["ari"][0] == 1.0 and result["ari"][1] < 0 and result["min"] == result["ari"][1]
