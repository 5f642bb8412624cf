"""Filan et al.'s shuffle nulls, the p and z formulas, and stability."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from neuronmap.graph.clusterability import (
    null_statistics,
    shuffle_bipartite,
    significance,
    stability,
    swap_edges,
)


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


def test_swaps_null_keeps_every_degree_and_each_neurons_weights():
    matrix, layers = _layered()
    null = shuffle_bipartite(matrix, layers, "swaps", np.random.default_rng(1))
    assert null.nnz == matrix.nnz  # no two edges landed on one cell (the build would have summed them)
    np.testing.assert_array_equal(np.diff(null.indptr), np.diff(matrix.indptr))  # neuron degrees
    for row in range(matrix.shape[0]):  # each neuron keeps its weights
        np.testing.assert_array_equal(np.sort(null[[row]].data), np.sort(matrix[[row]].data))
    for layer in range(3):  # token degrees, per layer
        np.testing.assert_array_equal(
            (null[layers == layer] != 0).sum(axis=0), (matrix[layers == layer] != 0).sum(axis=0)
        )
    moved = ((null != 0) != (matrix != 0)).nnz / 2  # each moved edge leaves one cell and fills another
    assert moved > 0.5 * matrix.nnz
    again = shuffle_bipartite(matrix, layers, "swaps", np.random.default_rng(1))
    assert (again != null).nnz == 0


def test_swap_edges_takes_back_swaps_onto_taken_cells():
    # two neurons sharing token 1: most proposed swaps would put a neuron twice on one token; the one valid
    # swap (neuron 0 takes token 2, neuron 1 token 0) may happen, the others must be taken back
    rows, cols = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 2])
    outcomes = set()
    for seed in range(20):
        out = swap_edges(rows, cols, 3, np.random.default_rng(seed))
        cells = frozenset(zip(rows.tolist(), out.tolist(), strict=True))
        assert len(cells) == 4 and sorted(out.tolist()) == [0, 1, 1, 2]
        outcomes.add(cells)
    assert outcomes == {
        frozenset({(0, 0), (0, 1), (1, 1), (1, 2)}),
        frozenset({(0, 2), (0, 1), (1, 1), (1, 0)}),
    }


def _broad_and_narrow_neurons(seed: int, planted: bool) -> sp.csr_array:
    """One layer whose neurons differ in breadth (Pareto), with or without four planted neuron-token groups."""
    rng = np.random.default_rng(seed)
    n, t = 200, 60
    breadth = rng.pareto(1.5, n) + 1
    mask = rng.random((n, t)) < np.minimum(breadth / breadth.mean() * 0.05, 1)[:, None]
    if planted:
        mask |= (np.arange(n)[:, None] % 4 == np.arange(t)[None, :] % 4) & (rng.random((n, t)) < 0.5)
    return sp.csr_array(mask * rng.uniform(0.5, 1.5, (n, t)) * np.sqrt(breadth)[:, None])


@pytest.mark.parametrize("planted", [False, True])
def test_swaps_null_tests_grouping_where_pairs_sees_breadth(planted):
    """Broad neurons glue the projection together: against ``pairs``, which evens breadth out, a layer looks
    less clusterable than chance whether or not it has groups; ``swaps`` keeps breadth and finds the groups."""
    from neuronmap.graph.communities import Leiden
    from neuronmap.graph.projection import project_matrix
    from neuronmap.graph.quality import modularity

    def statistic(matrix, seed):
        graph = project_matrix(matrix, "weighted", neighbors=16)
        return np.array([modularity(graph, Leiden(random_state=seed).fit(graph).labels_)])

    matrix, layers = _broad_and_narrow_neurons(1, planted), np.zeros(200, dtype=int)
    real = statistic(matrix, 0)[0]
    nulls = null_statistics(matrix, layers, statistic, kinds=["pairs", "swaps"], n_samples=5, seed=[1])
    pairs, swaps = (
        significance(real, nulls[kind][:, 0], higher_is_better=True) for kind in ("pairs", "swaps")
    )
    assert pairs["p"] == 1.0 and pairs["z"] < -5
    if planted:
        assert swaps["p"] == pytest.approx(1 / 6) and swaps["z"] > 5
    else:
        assert swaps["p"] > 1 / 6 and abs(swaps["z"]) < 3


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
