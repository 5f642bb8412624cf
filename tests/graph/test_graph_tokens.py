"""Tokens per cluster (share, lift, score), merging by token-profile cosine, token groups."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from neuronmap.graph.tokens import cluster_token_matrix, merge_clusters, token_groups, token_table


def _tokens(n: int) -> pd.DataFrame:
    return pd.DataFrame({"token_id": np.arange(n) + 100, "token": [f" w{i}" for i in range(n)]})


def test_token_table_share_lift_and_ranking():
    # token 0 is everywhere (a " the"), token 1 only in cluster 0, token 2 mostly in cluster 1
    magnitude = np.array([[10.0, 2.0, 1.0], [10.0, 0.0, 5.0]])
    table = token_table(
        sp.csr_array(magnitude), sp.csr_array(magnitude), _tokens(3), top=2, partition="cluster"
    )
    total = magnitude.sum()
    for row in table.itertuples():
        share = magnitude[row.cluster, row.token_id - 100] / magnitude[row.cluster].sum()
        lift = share / (magnitude[:, row.token_id - 100].sum() / total)
        assert row.share == pytest.approx(share) and row.lift == pytest.approx(lift)
        assert (
            row.score == pytest.approx(share * np.log2(lift))
            and row.weight == magnitude[row.cluster, row.token_id - 100]
        )
    first = table[table["rank"] == 0].set_index("cluster")["token"]
    assert first.to_dict() == {0: " w1", 1: " w2"}  # not the ubiquitous " w0", though it has the most weight
    assert table.groupby("cluster").size().tolist() == [2, 2]


def test_cluster_token_matrix_sums_member_rows():
    matrix = sp.csr_array(np.array([[1.0, 0], [2, 3], [0, 4]]))
    np.testing.assert_array_equal(
        cluster_token_matrix(matrix, np.array([1, 0, 1])).toarray(), [[2, 3], [1, 4]]
    )


PROFILES = np.array([[1.0, 0.5, 0.0], [1.0, 0.6, 0.1], [0.0, 0.0, 1.0], [0.0, 0.3, 1.0]])


def _cosine(a, b):
    return a @ b / np.linalg.norm(a) / np.linalg.norm(b)


@pytest.mark.parametrize(
    "threshold, expected",
    [
        (0.8, [0, 0, 1, 1]),  # A~B (0.99) and C~D (0.96)
        (0.97, [0, 0, 1, 2]),  # only A~B
        (_cosine(PROFILES[0], PROFILES[1]), [0, 0, 1, 2]),  # a cosine equal to the threshold merges
        (0.995, [0, 1, 2, 3]),
        (1.5, [0, 1, 2, 3]),  # above 1: never
    ],
)
def test_merge_threshold(threshold, expected):
    labels = np.repeat(np.arange(4), [3, 2, 2, 1])  # neuron-level labels; sizes order the merged ids
    merged = merge_clusters(sp.csr_array(PROFILES), labels, np.zeros(4, int), threshold)
    per_cluster = merged[np.unique(labels, return_index=True)[1]]
    assert per_cluster.tolist() == expected


def test_merging_is_transitive_and_stays_within_units():
    chain = np.array([[1.0, 0.0], [1.0, 0.3], [1.0, 0.7], [0.7, 1.0]])  # neighbours similar, ends not
    labels = np.arange(4)
    assert _cosine(chain[0], chain[3]) < 0.8
    assert merge_clusters(sp.csr_array(chain), labels, np.zeros(4, int), 0.9).tolist() == [0, 0, 0, 0]
    split = merge_clusters(sp.csr_array(chain), labels, np.array([0, 0, 1, 1]), 0.9)
    assert split.tolist() == [0, 0, 1, 1]


def test_token_groups_follow_the_token_profiles():
    rng = np.random.default_rng(0)
    magnitude = np.zeros((3, 9))
    for cluster in range(3):
        magnitude[cluster, cluster * 3 : cluster * 3 + 3] = rng.uniform(5, 10, 3)
    magnitude += rng.uniform(0, 0.5, magnitude.shape)
    groups = token_groups(sp.csr_array(magnitude), _tokens(9), neighbors=4, random_state=0)
    assert len(groups) == 9 and groups["group_size"].tolist() == [3] * 9
    for _, members in groups.groupby("group"):
        assert members["top_cluster"].nunique() == 1
        assert sorted(members["token_id"] - 100) == [3 * members["top_cluster"].iloc[0] + i for i in range(3)]
        assert members["weight"].is_monotonic_decreasing and members["rank"].tolist() == [0, 1, 2]
