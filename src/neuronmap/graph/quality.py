"""How good a partition of the neuron graph is: modularity and Filan et al.'s n-cut, per cluster and in total.

Both read two numbers per cluster: ``within`` (weight of the edges inside, each counted from both ends) and
``volume`` (sum of its nodes' weighted degrees). They work on a materialised sparse graph and on a
:class:`~neuronmap.graph.projection.GramOperator`, whose within-cluster weight comes from the factor directly.
"""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import pandas as pd
import scipy.sparse as sp

from neuronmap.graph.projection import GramOperator

Graph: TypeAlias = sp.sparray | GramOperator


def degrees(graph: Graph) -> np.ndarray:
    """Weighted degree of each node."""
    return np.asarray(graph @ np.ones(graph.shape[0])).ravel()


def membership(labels: np.ndarray) -> sp.csr_array:
    """Clusters x nodes 0/1 matrix: ``membership(labels) @ X`` sums the rows of X per cluster."""
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if len(labels) else 0
    return sp.csr_array((np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels)))


def cluster_weights(graph: Graph, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(within, volume) per cluster ``0..labels.max()``."""
    labels = np.asarray(labels)
    k = int(labels.max()) + 1 if len(labels) else 0
    if isinstance(graph, GramOperator):
        summed = membership(labels) @ graph.factor
        inside = np.asarray(summed.multiply(summed).sum(axis=1)).ravel()
        within = inside - np.bincount(labels, graph.diagonal, minlength=k)
    else:
        coo = sp.coo_array(graph)
        same = labels[coo.row] == labels[coo.col]
        within = np.bincount(labels[coo.row[same]], coo.data[same], minlength=k)
    return within, np.bincount(labels, degrees(graph), minlength=k)


def partition_table(within: np.ndarray, volume: np.ndarray, resolution: float = 1.0) -> pd.DataFrame:
    """Per-cluster quality from (within, volume): ``cut = volume - within``; ``ncut`` = cut/volume (the
    cluster's share of the n-cut; 0 for a cluster without edges); ``modularity`` = within/2m -
    resolution·(volume/2m)², the cluster's contribution to the modularity (2m = total volume)."""
    total = volume.sum()
    cut = volume - within
    with np.errstate(divide="ignore", invalid="ignore"):
        ncut_share = np.where(volume > 0, cut / volume, 0.0)
    share = volume / total if total > 0 else np.zeros_like(volume)
    contribution = (within / total if total > 0 else np.zeros_like(within)) - resolution * share**2
    return pd.DataFrame(
        {"volume": volume, "within": within, "cut": cut, "ncut": ncut_share, "modularity": contribution}
    )


def modularity(graph: Graph, labels: np.ndarray, resolution: float = 1.0) -> float:
    """Newman's modularity with a resolution (networkx's ``community.modularity`` on the same graph)."""
    return float(partition_table(*cluster_weights(graph, labels), resolution)["modularity"].sum())


def ncut(graph: Graph, labels: np.ndarray) -> float:
    """Filan et al.'s n-cut: the sum over clusters X of cut(X, not X) / vol(X)."""
    return float(partition_table(*cluster_weights(graph, labels))["ncut"].sum())
