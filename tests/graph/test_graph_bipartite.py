"""Edges from traces: score transforms, per-context filters before summing, token fields, bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from neuronmap.errors import NeuronmapError
from neuronmap.graph.bipartite import bipartite_matrix, build_edges


def _contexts(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "context_id": np.arange(n) * 10,
            "target_ids": [[500 + i % 3, 1] for i in range(n)],
            "target_tokens": [[f" t{500 + i % 3}", "x"] for i in range(n)],
            "input_ids": [[1, 2, 300 + i, 500 + i % 3] for i in range(n)],
            "tokens": [["a", "b", f" in{300 + i}", f" t{500 + i % 3}"] for i in range(n)],
            "position": [2] * n,
        }
    )


def _scores(seed: int = 0, n_contexts: int = 6) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        (cid * 10, layer, neuron, rng.normal())
        for cid in range(n_contexts)
        for layer in range(2)
        for neuron in rng.choice(8, 5, replace=False)
    ]
    return pd.DataFrame(rows, columns=["context_id", "layer", "neuron", "score"])


def _reference(contexts, scores, transform, min_edge=0.0, top_k=None) -> pd.DataFrame:
    """The same edges computed the slow, obvious way with pandas."""
    df = scores.copy()
    df["value"] = transform(df["score"].to_numpy())
    df = df[(df["value"] != 0) & (df["value"].abs() >= min_edge)]
    if top_k is not None:
        df = df.assign(mag=df["value"].abs()).sort_values(
            ["context_id", "mag", "layer", "neuron"], ascending=[True, False, True, True]
        )
        df = df.groupby("context_id").head(top_k)
    token = contexts.set_index("context_id")["target_ids"].map(lambda ids: ids[0])
    df = df.assign(token_id=df["context_id"].map(token))
    out = df.groupby(["layer", "neuron", "token_id"]).agg(
        weight=("value", "sum"), contexts=("context_id", "nunique")
    )
    return out.reset_index()


@pytest.mark.parametrize(
    "edge_score, transform",
    [("positive", lambda s: np.maximum(s, 0)), ("abs", np.abs), ("signed", lambda s: s)],
)
@pytest.mark.parametrize("min_edge, top_k", [(0.0, None), (0.5, None), (0.0, 3), (0.3, 2)])
def test_edges_match_a_pandas_reference(edge_score, transform, min_edge, top_k):
    contexts, scores = _contexts(), _scores()
    edges = build_edges(contexts, scores, edge_score=edge_score, min_edge=min_edge, top_k=top_k)
    ref = _reference(contexts, scores, transform, min_edge, top_k)
    assert list(edges.columns) == ["layer", "neuron", "token_id", "token", "weight", "contexts"]
    assert (
        edges[["layer", "neuron", "token_id"]].to_numpy().tolist()
        == ref[["layer", "neuron", "token_id"]].to_numpy().tolist()
    )
    np.testing.assert_allclose(edges["weight"], ref["weight"], rtol=1e-12)
    assert edges["contexts"].tolist() == ref["contexts"].tolist()
    assert (edges["token"] == edges["token_id"].map(lambda t: f" t{t}")).all()


def test_top_k_is_per_context_before_summing():
    contexts = _contexts(2).assign(target_ids=[[7, 1], [7, 1]], target_tokens=[[" x", "y"]] * 2)
    scores = pd.DataFrame(
        {
            "context_id": [0, 0, 0, 10, 10, 10],
            "layer": 0,
            "neuron": [1, 2, 3, 1, 2, 3],
            "score": [3.0, 2.0, 1.0, 1.0, 2.0, 3.0],
        }
    )
    edges = build_edges(contexts, scores, top_k=1)
    # Summed first, neuron 2 (2 + 2) would beat 1 and 3 (3 + 1 each) for a top-1; per context it never wins.
    assert edges[["neuron", "weight", "contexts"]].to_numpy().tolist() == [[1, 3.0, 1], [3, 3.0, 1]]


def test_input_token_field_uses_the_scored_position():
    contexts, scores = _contexts(), _scores()
    edges = build_edges(contexts, scores, token_field="input")
    assert set(edges["token_id"]) == {300 + i for i in range(6)}  # the context's position 2
    assert set(edges["token"]) == {f" in{300 + i}" for i in range(6)}
    per_position = scores.assign(position=3)
    edges = build_edges(contexts, per_position, token_field="input")
    assert set(edges["token_id"]) == {500, 501, 502}
    with pytest.raises(NeuronmapError, match="position lies outside"):
        build_edges(contexts, scores.assign(position=9), token_field="input")


def test_unscored_contexts_may_lack_a_token():
    contexts, scores = _contexts(), _scores()
    contexts.loc[0, "position"] = 99  # context 0 has no input token at its position, but nothing scored it
    edges = build_edges(contexts, scores[scores["context_id"] != 0], token_field="input")
    assert 300 not in set(edges["token_id"])


def test_distinct_contexts_are_counted_once_per_edge():
    contexts = _contexts(1)
    scores = pd.DataFrame(
        {"context_id": [0, 0], "layer": 0, "neuron": 4, "score": [1.0, 2.0], "position": [0, 1]}
    )
    edges = build_edges(contexts, scores)  # two positions of one context, one target token
    assert edges[["weight", "contexts"]].to_numpy().tolist() == [[3.0, 1]]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c, s: (c, s.iloc[0:0]), "scores.parquet has no rows"),
        (lambda c, s: (c, s.assign(score=-1.0)), "no neuron-token edge is left"),
        (lambda c, s: (c, s.drop(columns="score")), "lacks column"),
        (lambda c, s: (c.drop(columns="target_ids"), s), "lacks column"),
        (lambda c, s: (c, s.assign(context_id=999)), "missing from contexts.parquet"),
        (lambda c, s: (pd.concat([c, c]), s), "not unique"),
        (
            lambda c, s: (
                c.assign(
                    target_ids=[[]] + list(c["target_ids"][1:]),
                    target_tokens=[[]] + list(c["target_tokens"][1:]),
                ),
                s,
            ),
            "empty target_ids",
        ),
    ],
)
def test_bad_input_is_a_clear_error(mutate, message):
    contexts, scores = mutate(_contexts(), _scores())
    with pytest.raises(NeuronmapError, match=message):
        build_edges(contexts, scores)


def test_bipartite_matrix_rows_sorted_by_layer_then_neuron():
    edges = build_edges(_contexts(), _scores(), edge_score="abs")
    matrix, neurons, tokens = bipartite_matrix(edges)
    assert neurons.equals(neurons.sort_values(["layer", "neuron"]).reset_index(drop=True))
    assert tokens["token_id"].is_monotonic_increasing
    assert matrix.shape == (len(neurons), len(tokens)) and matrix.nnz == len(edges)
    np.testing.assert_allclose(matrix.sum(), edges["weight"].sum())
