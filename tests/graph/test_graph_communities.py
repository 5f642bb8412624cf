"""Communities and partition quality against independent references: python-louvain, networkx, brute force,
and planted partitions."""

from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
import scipy.sparse as sp
from community import community_louvain
from networkx.algorithms import bipartite as nx_bipartite
from sklearn.metrics import adjusted_rand_score

import neuronmap.graph.communities as communities_module
from neuronmap.graph import project
from neuronmap.graph.bipartite import bipartite_matrix, build_edges
from neuronmap.graph.communities import Leiden, Louvain, Spectral, SpectralSweep, canonical_labels
from neuronmap.graph.projection import GramOperator, gram_factor
from neuronmap.graph.quality import modularity, ncut


@pytest.fixture
def planted_graph(planted):
    contexts, scores, truth = planted(n_groups=4, noise=4, seed=3)
    edges = build_edges(contexts, scores)
    graph, neurons = project(edges, "weighted", neighbors=None)
    return graph, truth[neurons["layer"], neurons["neuron"]], edges


def test_louvain_equals_python_louvain_on_the_networkx_projection(planted):
    contexts, scores, _ = planted(n_groups=5, noise=6, seed=1)
    edges = build_edges(contexts, scores)
    graph, neurons = project(edges, "collaboration", neighbors=None)
    # The original method: networkx's projection, then python-louvain, on the same graph in the same node order.
    nodes = [("n", layer, neuron) for layer, neuron in zip(neurons["layer"], neurons["neuron"], strict=True)]
    bip = nx.Graph()
    bip.add_nodes_from(nodes)
    bip.add_edges_from((("n", r.layer, r.neuron), ("t", r.token_id)) for r in edges.itertuples())
    projected = nx_bipartite.collaboration_weighted_projected_graph(bip, nodes)
    index = {node: i for i, node in enumerate(nodes)}
    reference = nx.Graph()
    reference.add_nodes_from(range(len(nodes)))
    reference.add_weighted_edges_from(
        sorted(
            (min(index[u], index[v]), max(index[u], index[v]), w)
            for u, v, w in projected.edges(data="weight")
        )
    )
    for seed in range(3):
        parts = community_louvain.best_partition(reference, random_state=seed)
        expected = canonical_labels(np.array([parts[i] for i in range(len(nodes))]))
        np.testing.assert_array_equal(Louvain(random_state=seed).fit(graph).labels_, expected)


def test_leiden_is_repeatable_and_seeded(planted_graph):
    graph, _, _ = planted_graph
    first = Leiden(random_state=7).fit(graph).labels_
    np.testing.assert_array_equal(first, Leiden(random_state=7).fit(graph).labels_)
    assert modularity(graph, first) >= modularity(graph, Louvain(random_state=7).fit(graph).labels_) - 0.01


@pytest.mark.parametrize(
    "estimator", [Leiden(random_state=0), Louvain(random_state=0), Spectral(4, random_state=0)]
)
def test_planted_partition_is_recovered(planted_graph, estimator):
    graph, truth, _ = planted_graph
    assert adjusted_rand_score(truth, estimator.fit(graph).labels_) >= 0.9


def test_isolated_nodes_are_singletons():
    graph = sp.csr_array(np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], float))
    for estimator in [Leiden(random_state=0), Louvain(random_state=0)]:
        np.testing.assert_array_equal(estimator.fit(graph).labels_, [0, 0, 1, 2])
    sweep = SpectralSweep([1, 2, 3], random_state=0).fit(graph)
    assert sweep.k_values_.tolist() == [1, 2]  # only 2 nodes have edges
    assert sweep.labels_[0].tolist() == [0, 0, 1, 2]


def test_canonical_labels_orders_by_size_then_first_node():
    np.testing.assert_array_equal(canonical_labels(np.array([5, 9, 9, 5, 7, 9])), [1, 0, 0, 1, 2, 0])
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 6, 50)
    relabelled = rng.permutation(6)[labels]
    np.testing.assert_array_equal(canonical_labels(labels), canonical_labels(relabelled))


@pytest.mark.parametrize("resolution", [1.0, 0.5, 2.0])
def test_modularity_equals_networkx(planted_graph, resolution):
    graph, _, _ = planted_graph
    labels = np.random.default_rng(0).integers(0, 5, graph.shape[0])
    labels[: len(labels) // 2] = 0
    reference = communities_module.to_networkx(graph)
    groups = [set(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]
    expected = nx.community.modularity(reference, groups, weight="weight", resolution=resolution)
    assert modularity(graph, labels, resolution) == pytest.approx(expected, abs=1e-12)


def test_ncut_equals_brute_force():
    rng = np.random.default_rng(1)
    n = 18
    dense = np.triu(rng.random((n, n)) * (rng.random((n, n)) < 0.4), 1)
    dense = dense + dense.T
    graph = sp.csr_array(dense)
    for labels in [rng.integers(0, 3, n), rng.integers(0, 5, n)]:
        expected = 0.0
        for c in np.unique(labels):
            inside = labels == c
            cut = sum(
                dense[u, v] for u, v in itertools.product(range(n), range(n)) if inside[u] and not inside[v]
            )
            volume = sum(dense[u, v] for u, v in itertools.product(range(n), range(n)) if inside[u])
            expected += cut / volume
        assert ncut(graph, labels) == pytest.approx(expected, rel=1e-12)


def test_spectral_on_the_operator_equals_spectral_on_the_matrix(monkeypatch, planted_graph):
    monkeypatch.setattr(communities_module, "DENSE_EIGEN_MAX", 10)  # use eigsh on both
    graph, truth, edges = planted_graph
    operator = GramOperator(gram_factor(bipartite_matrix(edges)[0], "weighted"))
    on_matrix = SpectralSweep([2, 4, 6], random_state=0).fit(graph)
    on_operator = SpectralSweep([2, 4, 6], random_state=0).fit(operator)
    for a, b in zip(on_matrix.labels_, on_operator.labels_, strict=True):
        assert adjusted_rand_score(a, b) == 1.0
    np.testing.assert_allclose(on_matrix.ncut_, on_operator.ncut_, rtol=1e-9)
    assert adjusted_rand_score(truth, on_operator.labels_[1]) >= 0.9
