"""What the clusters stand for: tokens per cluster with lift, token groups, and merging of look-alike
clusters.

A cluster's token weights are the sums of its neurons' neuron->token edge weights. Shares, lifts, profiles and
merges use the magnitudes |weight| (for ``--edge-score signed`` they would otherwise cancel); ``weight`` keeps
the signed sum. Tokens are ranked by ``score = share · log2(lift)``: the token's term in the KL divergence of
the cluster's token distribution from the overall one. It favours tokens both frequent in the cluster and
over-represented there, so that " the" (lift about 1) does not top every cluster and a token seen once does
not either.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from neuronmap.graph.communities import Leiden, canonical_labels
from neuronmap.graph.projection import project_matrix
from neuronmap.graph.quality import membership

MERGE_TOLERANCE = 1e-12  # a cosine computed as 0.7999999999999999 still meets a threshold of 0.8


def cluster_token_matrix(matrix: sp.sparray, labels: np.ndarray) -> sp.csr_array:
    """Clusters x tokens: the sum of each cluster's rows of the bipartite ``matrix``."""
    return sp.csr_array(membership(labels) @ matrix)


def token_table(
    weights: sp.sparray, magnitude: sp.sparray, tokens: pd.DataFrame, top: int, partition: str
) -> pd.DataFrame:
    """The ``top`` tokens of each cluster by score, with weight, share (of the cluster's magnitude), lift
    (share over the token's share of all clusters) and score."""
    coo = sp.coo_array(magnitude)
    coo.eliminate_zeros()
    cluster, token, value = coo.row, coo.col, coo.data
    cluster_total = np.asarray(magnitude.sum(axis=1)).ravel()
    token_share = np.asarray(magnitude.sum(axis=0)).ravel() / magnitude.sum()
    share = value / cluster_total[cluster]
    lift = share / token_share[token]
    score = share * np.log2(lift)
    token_ids = tokens["token_id"].to_numpy()
    order = np.lexsort((token_ids[token], -score, cluster))
    cluster, token, share, lift, score = cluster[order], token[order], share[order], lift[order], score[order]
    starts = (
        np.flatnonzero(np.r_[True, cluster[1:] != cluster[:-1]]) if len(cluster) else np.zeros(0, np.int64)
    )
    rank = np.arange(len(cluster)) - np.repeat(starts, np.diff(np.r_[starts, len(cluster)]))
    keep = rank < top
    cluster, token = cluster[keep], token[keep]
    return pd.DataFrame(
        {
            "partition": partition,
            "cluster": cluster.astype(np.int32),
            "rank": rank[keep].astype(np.int32),
            "token_id": token_ids[token],
            "token": tokens["token"].to_numpy()[token],
            "weight": sp.csr_array(weights)[cluster, token],
            "share": share[keep],
            "lift": lift[keep],
            "score": score[keep],
        }
    )


def merge_clusters(
    magnitude: sp.sparray, labels: np.ndarray, units: np.ndarray, threshold: float
) -> np.ndarray:
    """Merged partition of the nodes: clusters whose token profiles have cosine >= ``threshold`` are merged,
    transitively (connected components of the 'similar enough' graph), but never across scope units (layers
    for ``within-layer``). Returns canonical merged labels per node."""
    similar = sp.coo_array(
        project_matrix(magnitude, "cosine", neighbors=None, threshold=threshold - MERGE_TOLERANCE)
    )
    same_unit = units[similar.row] == units[similar.col]
    links = sp.csr_array(
        (similar.data[same_unit], (similar.row[same_unit], similar.col[same_unit])), shape=similar.shape
    )
    _, component = connected_components(links, directed=False)
    return canonical_labels(component[np.asarray(labels)])


def token_groups(
    magnitude: sp.sparray, tokens: pd.DataFrame, neighbors: int | None, random_state: int | None
) -> pd.DataFrame:
    """Tokens grouped by their profile over clusters: Leiden on the cosine graph of the profiles (columns of
    ``magnitude``), pruned to ``neighbors`` like the neuron graph. Each token row names its group, its rank in
    the group by weight, and the cluster where its weight is largest."""
    profiles = sp.csr_array(sp.csr_array(magnitude).T)
    group = Leiden(random_state=random_state).fit(project_matrix(profiles, "cosine", neighbors)).labels_
    weight = np.asarray(profiles.sum(axis=1)).ravel()
    token_ids = tokens["token_id"].to_numpy()
    order = np.lexsort((token_ids, -weight, group))
    sizes = np.bincount(group)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    return pd.DataFrame(
        {
            "group": group[order],
            "rank": (np.arange(len(order)) - starts[group[order]]).astype(np.int32),
            "token_id": token_ids[order],
            "token": tokens["token"].to_numpy()[order],
            "weight": weight[order],
            "top_cluster": np.asarray(profiles.argmax(axis=1)).ravel()[order].astype(np.int32),
            "group_size": sizes[group[order]].astype(np.int64),
        }
    )
