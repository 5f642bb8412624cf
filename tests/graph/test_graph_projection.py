"""Projections against independent references: networkx, brute-force formulas, scikit-learn, exact pruning."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from networkx.algorithms import bipartite as nx_bipartite
from sklearn.metrics.pairwise import cosine_similarity

import neuronmap.graph.projection as projection_module
from neuronmap.graph import project
from neuronmap.graph.bipartite import bipartite_matrix
from neuronmap.graph.projection import GramOperator, _select_dense, gram_factor
from neuronmap.graph.quality import cluster_weights


def random_edges(seed: int, n_neurons: int = 400, n_tokens: int = 150, m: int = 1400, unit: bool = False):
    """A random bipartite graph with hub tokens (Zipf degrees), as traces give."""
    rng = np.random.default_rng(seed)
    token = np.minimum(rng.zipf(1.4, m) - 1, n_tokens - 1) + 1000
    neuron = rng.integers(0, n_neurons, m)
    edges = pd.DataFrame(
        {
            "layer": neuron // 100,
            "neuron": neuron % 100,
            "token_id": token,
            "weight": 1.0 if unit else rng.uniform(0.1, 3.0, m),
        }
    ).drop_duplicates(["layer", "neuron", "token_id"])
    return edges.reset_index(drop=True)


def as_dict(matrix) -> dict[tuple[int, int], float]:
    coo = matrix.tocoo()
    return {(int(i), int(j)): float(w) for i, j, w in zip(coo.row, coo.col, coo.data, strict=True) if i < j}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_collaboration_equals_networkx(seed):
    edges = random_edges(seed)
    assert len(edges) >= 1000
    graph, neurons = project(edges, "collaboration", neighbors=None)
    nodes = [("n", layer, neuron) for layer, neuron in zip(neurons["layer"], neurons["neuron"], strict=True)]
    bip = nx.Graph()
    bip.add_nodes_from(nodes)
    bip.add_edges_from((("n", r.layer, r.neuron), ("t", r.token_id)) for r in edges.itertuples())
    reference = nx_bipartite.collaboration_weighted_projected_graph(bip, nodes)
    position = {node: i for i, node in enumerate(nodes)}
    expected = {
        (min(position[u], position[v]), max(position[u], position[v])): w
        for u, v, w in reference.edges(data="weight")
    }
    mine = as_dict(graph)
    assert len(expected) > 1000 and set(mine) == set(expected)
    assert max(abs(mine[key] - expected[key]) for key in expected) <= 1e-12


def test_weighted_with_unit_weights_is_collaboration():
    edges = random_edges(3, unit=True)
    weighted = project(edges, "weighted", neighbors=None)[0].toarray()
    collaboration = project(edges, "collaboration", neighbors=None)[0].toarray()
    assert ((weighted != 0) == (collaboration != 0)).all() and (collaboration != 0).sum() > 1000
    assert np.abs(weighted - collaboration).max() <= 1e-12


def test_weighted_matches_its_formula():
    edges = random_edges(4, n_neurons=60, n_tokens=20, m=200)
    graph, neurons = project(edges, "weighted", neighbors=None)
    b = bipartite_matrix(edges)[0].toarray()
    d, s = (b != 0).sum(axis=0), np.abs(b).sum(axis=0)
    n = len(b)
    expected = np.zeros((n, n))
    for u in range(n):
        for v in range(n):
            if u != v:
                for k in range(b.shape[1]):
                    if d[k] > 1:
                        expected[u, v] += b[u, k] * b[v, k] * d[k] / ((d[k] - 1) * s[k])
    np.testing.assert_allclose(graph.toarray(), expected, rtol=0, atol=1e-12)


def test_cosine_matches_scikit_learn():
    edges = random_edges(5, n_neurons=80, m=300)
    graph, _ = project(edges, "cosine", neighbors=None)
    expected = cosine_similarity(bipartite_matrix(edges)[0].toarray())
    np.fill_diagonal(expected, 0)
    np.testing.assert_allclose(graph.toarray(), expected, atol=1e-12)


@pytest.mark.parametrize("name", ["collaboration", "weighted", "cosine"])
def test_projection_is_symmetric_positive_without_diagonal(name):
    graph, neurons = project(random_edges(6), name, neighbors=8)
    assert list(neurons.columns) == ["layer", "neuron"] and graph.shape == (len(neurons),) * 2
    assert (graph != graph.T).nnz == 0
    assert (graph.diagonal() == 0).all() and (graph.data > 0).all()


def _top_values(row: np.ndarray, k: int) -> np.ndarray:
    return np.sort(row[row > 0])[::-1][:k]


# The three ways a block of rows is computed: hub columns dense plus the rest sparse; all sparse then a dense
# pass; all sparse, pruned as a sparse matrix.
PATHS = {
    "hubs": {"HUB_MIN_DEGREE": 8},
    "dense": {"HUB_MIN_DEGREE": 10**9, "SPARSE_BLOCK_FILL": 0.0},
    "sparse": {"HUB_MIN_DEGREE": 10**9, "SPARSE_BLOCK_FILL": 1.0},
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", ["collaboration", "weighted", "cosine"])
@pytest.mark.parametrize("neighbors", [1, 6, 40])
def test_blocked_top_neighbors_equal_the_exact_projection_pruned(monkeypatch, path, name, neighbors):
    monkeypatch.setattr(projection_module, "BLOCK_CELLS", 400 * 37)  # many blocks
    for constant, value in PATHS[path].items():
        monkeypatch.setattr(projection_module, constant, value)
    edges = random_edges(7)
    matrix = bipartite_matrix(edges)[0]
    assert (len(projection_module._hub_columns(gram_factor(matrix, name))) > 0) == (path == "hubs")
    exact = project(edges, name, neighbors=None)[0].toarray()
    blocked = project(edges, name, neighbors=neighbors)[0].toarray()
    kept = blocked != 0
    assert (exact[kept] > 0).all() and np.abs(blocked[kept] - exact[kept]).max() <= 1e-12
    for u in range(len(exact)):  # each row holds the exact top values (with ties, any of the tied columns)
        np.testing.assert_allclose(
            _top_values(blocked[u], neighbors), _top_values(exact[u], neighbors), atol=1e-12
        )
    if name != "collaboration":  # continuous weights, no ties: the very same pairs
        top = np.zeros_like(kept)
        for u, row in enumerate(exact):
            top[u, np.argsort(-row, kind="stable")[:neighbors]] = True
        assert ((top | top.T) & (exact > 0) == kept).all()


def test_threshold_keeps_exactly_the_weights_above_it():
    edges = random_edges(8)
    exact = project(edges, "cosine", neighbors=None)[0].toarray()
    kept = project(edges, "cosine", neighbors=None, threshold=0.3)[0].toarray()
    assert ((kept != 0) == (exact >= 0.3)).all()
    np.testing.assert_allclose(kept, np.where(exact >= 0.3, exact, 0), rtol=0, atol=1e-12)


def test_select_falls_back_when_the_sampled_cut_is_too_high():
    rng = np.random.default_rng(0)
    block = rng.random((5, 640))
    block[0, ::10] = np.arange(64) + 100.0  # every sampled column holds a top value: the cut leaves too few
    block[1] = 0.5  # all tied
    block[2, :] = -1.0  # nothing positive
    block[2, [3, 7]] = 2.0
    rows, cols, _ = _select_dense(block, np.empty(block.shape, bool), 4, None)
    kept = np.zeros(block.shape, bool)
    kept[rows, cols] = True
    for u, row in enumerate(block):
        order = np.lexsort((np.arange(len(row)), -row))
        expected = [j for j in order[:4] if row[j] > 0]
        assert sorted(np.flatnonzero(kept[u])) == sorted(expected), u


def test_gram_operator_is_the_unmaterialised_projection():
    edges = random_edges(9)
    factor = gram_factor(bipartite_matrix(edges)[0], "weighted")
    graph = project(edges, "weighted", neighbors=None)[0]
    operator = GramOperator(factor)
    x = np.random.default_rng(0).normal(size=(graph.shape[0], 3))
    np.testing.assert_allclose(operator @ x, graph @ x, atol=1e-10)
    labels = np.random.default_rng(1).integers(0, 5, graph.shape[0])
    for mine, expected in zip(cluster_weights(operator, labels), cluster_weights(graph, labels), strict=True):
        np.testing.assert_allclose(mine, expected, rtol=1e-10)
