"""The neuron<->token bipartite graph: the trace's sparse scores summed into weighted (neuron, token) edges.

A context contributes its scores to one token: its first target token (``token_field="target"``) or the input
token at the scored position (``"input"``). Scores are transformed and filtered per context *before* summing,
so ``top_k`` and ``min_edge`` speak about single contexts, as the trace's own sparsity does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from neuronmap.errors import NeuronmapError

EDGE_COLUMNS = ["layer", "neuron", "token_id", "token", "weight", "contexts"]


def _require_columns(df: pd.DataFrame, columns: list[str], table: str) -> None:
    """Fail with the names of the missing columns rather than a KeyError deep inside a computation."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise NeuronmapError(
            f"{table} lacks column(s) {', '.join(missing)}; was it written by `neuronmap trace`?"
        )


def _transform(score: np.ndarray, edge_score: str) -> np.ndarray:
    """The edge value of each score, as a new float64 array (transformed in place)."""
    value = score.astype(np.float64)
    if edge_score == "positive":
        np.maximum(value, 0.0, out=value)
    elif edge_score == "abs":
        np.abs(value, out=value)
    return value


def _tokens(
    contexts: pd.DataFrame, ctx_row: np.ndarray, positions: np.ndarray | None, token_field: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(token index of each score row, token ids, token strings). ``ctx_row`` indexes ``contexts``; the token is
    looked up per context unless the scores carry their own positions, so 10M score rows cost one gather."""
    if token_field == "target":
        ids_col, str_col = contexts["target_ids"], contexts["target_tokens"]
        where = np.zeros(len(contexts), np.int64)
    else:
        ids_col, str_col = contexts["input_ids"], contexts["tokens"]
        where = contexts["position"].to_numpy(np.int64)
    lengths = np.fromiter((len(x) for x in ids_col), np.int64, len(ids_col))
    offsets = np.r_[0, np.cumsum(lengths)[:-1]]
    flat_ids = np.concatenate([np.asarray(x, np.int64) for x in ids_col] + [np.zeros(0, np.int64)])
    flat_str = np.concatenate([np.asarray(x, object) for x in str_col] + [np.zeros(0, object)])
    if len(flat_str) != len(flat_ids):
        raise NeuronmapError(f"contexts.parquet: {str_col.name} and {ids_col.name} differ in length")
    if positions is None:
        scored = np.bincount(ctx_row, minlength=len(contexts)) > 0
        if ((where < 0) | (where >= lengths))[scored].any():
            raise NeuronmapError(
                "contexts.parquet: a scored context has an empty target_ids list"
                if token_field == "target"
                else "contexts.parquet: a scored context's position lies outside its input_ids"
            )
        flat = np.where(scored, offsets + np.clip(where, 0, None), 0)
        ids, first, inverse = np.unique(flat_ids[flat], return_index=True, return_inverse=True)
        return inverse.astype(np.int32)[ctx_row], ids, flat_str[flat[first]]
    if ((positions < 0) | (positions >= lengths[ctx_row])).any():
        raise NeuronmapError("scores.parquet: a position lies outside its context's input_ids")
    flat = offsets[ctx_row] + positions
    ids, first, inverse = np.unique(flat_ids[flat], return_index=True, return_inverse=True)
    return inverse.astype(np.int32), ids, flat_str[flat[first]]


def build_edges(
    contexts: pd.DataFrame,
    scores: pd.DataFrame,
    *,
    edge_score: str = "positive",
    min_edge: float = 0.0,
    top_k: int | None = None,
    token_field: str = "target",
) -> pd.DataFrame:
    """Sum per-context scores into (layer, neuron, token_id) edges.

    Each score is transformed (``positive``: max(s, 0); ``abs``: |s|; ``signed``: s); zero values and values
    with |v| < ``min_edge`` are dropped, then only the ``top_k`` largest |v| of each context are kept.
    ``weight`` is the sum over contexts and ``contexts`` the number of distinct contexts behind the edge. Rows
    are sorted by (layer, neuron, token_id); edges whose signed sum is exactly zero are dropped.
    """
    _require_columns(scores, ["context_id", "layer", "neuron", "score"], "scores.parquet")
    need = (
        ["context_id", "target_ids", "target_tokens"]
        if token_field == "target"
        else ["context_id", "input_ids", "tokens", "position"]
    )
    _require_columns(contexts, need, "contexts.parquet")
    if scores.empty:
        raise NeuronmapError("scores.parquet has no rows: the trace scored no neuron; nothing to map")

    value = _transform(scores["score"].to_numpy(), edge_score)
    keep = (value != 0) & (np.abs(value) >= min_edge)
    ctx_id = scores["context_id"].to_numpy()[keep]
    layer = scores["layer"].to_numpy()[keep]
    neuron = scores["neuron"].to_numpy()[keep]
    value = value[keep]
    positions = None
    if token_field == "input" and "position" in scores.columns:
        positions = scores["position"].to_numpy(np.int64)[keep]
    del keep

    if top_k is not None and len(value):
        order = np.lexsort((neuron, layer, -np.abs(value), ctx_id))
        starts = np.flatnonzero(np.r_[True, ctx_id[order][1:] != ctx_id[order][:-1]])
        rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
        chosen = np.sort(order[rank < top_k])
        ctx_id, layer, neuron, value = ctx_id[chosen], layer[chosen], neuron[chosen], value[chosen]
        positions = None if positions is None else positions[chosen]
    if not len(value):
        raise NeuronmapError(
            f"no neuron-token edge is left after --edge-score {edge_score} and --min-edge {min_edge}: "
            "every score was zero, negative or too small"
        )

    ctx_index = pd.Index(contexts["context_id"].to_numpy(np.int64))
    if not ctx_index.is_unique:
        raise NeuronmapError("contexts.parquet: context_id is not unique")
    ctx_row = ctx_index.get_indexer(ctx_id)
    del ctx_id
    if (ctx_row < 0).any():
        raise NeuronmapError("scores.parquet refers to context ids missing from contexts.parquet")
    token_row, token_ids, token_strings = _tokens(contexts, ctx_row, positions, token_field)

    # One int64 key per (neuron, token), built in place: sort once, then sum and count contexts per run of
    # equal keys. (A 100k-context trace has 10M score rows: every temporary array here is 40-80 MB.)
    span = int(neuron.max()) + 1
    key = layer.astype(np.int64)
    key *= span
    key += neuron
    key *= len(token_ids)
    key += token_row
    del layer, neuron, token_row
    order = np.lexsort((ctx_row, key))
    key, ctx_row = key[order], ctx_row[order]
    change = key[1:] != key[:-1]
    starts = np.flatnonzero(np.r_[True, change])
    new_context = np.r_[True, change | (ctx_row[1:] != ctx_row[:-1])]
    edge_key = key[starts]
    token = edge_key % len(token_ids)
    edges = pd.DataFrame(
        {
            "layer": (edge_key // len(token_ids) // span).astype(np.int32),
            "neuron": (edge_key // len(token_ids) % span).astype(np.int32),
            "token_id": token_ids[token],
            "token": token_strings[token].astype(str),
            "weight": np.add.reduceat(value[order], starts),
            "contexts": np.add.reduceat(new_context.astype(np.int32), starts).astype(np.int64),
        }
    )
    edges = edges[edges["weight"] != 0].reset_index(drop=True)
    if edges.empty:
        raise NeuronmapError("every neuron-token edge summed to zero; nothing to map")
    return edges


def bipartite_matrix(edges: pd.DataFrame) -> tuple[sp.csr_array, pd.DataFrame, pd.DataFrame]:
    """The edges as a neurons x tokens CSR matrix, with its row index (layer, neuron) and column index
    (token_id, token), both sorted, so that rows of one layer are contiguous."""
    _require_columns(edges, ["layer", "neuron", "token_id", "weight"], "edges")
    layer, neuron = edges["layer"].to_numpy(np.int64), edges["neuron"].to_numpy(np.int64)
    span = int(neuron.max()) + 1 if len(neuron) else 1
    neuron_keys, rows = np.unique(layer * span + neuron, return_inverse=True)
    token_ids, first, cols = np.unique(
        edges["token_id"].to_numpy(np.int64), return_index=True, return_inverse=True
    )
    matrix = sp.csr_array(
        (edges["weight"].to_numpy(np.float64), (rows, cols)), shape=(len(neuron_keys), len(token_ids))
    )
    matrix.sum_duplicates()
    neurons = pd.DataFrame(
        {"layer": (neuron_keys // span).astype(np.int32), "neuron": (neuron_keys % span).astype(np.int32)}
    )
    tokens = pd.DataFrame({"token_id": token_ids})
    if "token" in edges.columns:
        tokens["token"] = edges["token"].to_numpy()[first]
    return matrix, neurons, tokens
