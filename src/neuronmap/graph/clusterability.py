"""Is the neuron graph more clusterable than chance? Filan et al.'s shuffle test, and stability across seeds.

A null network is the trace's bipartite graph with its weights shuffled within each layer, then put through
the same projection and clustering as the real one, so that the structure any projection creates by itself (a
token makes a clique of its neurons) is in the null too. Three shuffles:

- ``edges``: the weights are permuted among the layer's existing edges; every degree stays. The collaboration
  projection ignores weights, so for it this null is the real graph and is skipped.
- ``pairs``: the weights, zeros included, are permuted among all (neuron, token) pairs of the layer: the
  layer's edges land on random pairs, carrying their weights.
- ``swaps``: the configuration-model null (Maslov and Sneppen): edges exchange their tokens in random pairs,
  so every neuron keeps its degree and its weights and every token its degree, only who meets whom changes.
  ``pairs`` evens out the degrees too, so a layer whose neurons differ in breadth (a few neurons that matter for
  every token, as in the last layers) can look less clusterable than ``pairs`` shuffles for that reason alone;
  ``swaps`` keeps that breadth and tests the grouping itself.

With r the number of nulls at least as clusterable as the real graph (modularity >= real, or n-cut <= real)
out of n, p = (r + 1) / (n + 1); z is the distance from the null mean in null standard deviations, signed so
that positive means more clusterable than the nulls.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp

from neuronmap.graph.config import NULL_KINDS
from neuronmap.progress import track

# Each edge is offered ten swaps. On the unit test's layer of broad and narrow neurons the nulls' modularity
# stops moving after five rounds, and after ten 95% of the edges have left their cell.
SWAP_ROUNDS = 10


def shuffle_bipartite(
    matrix: sp.sparray, row_layers: np.ndarray, kind: str, rng: np.random.Generator
) -> sp.csr_array:
    """A null copy of the bipartite matrix (rows sorted by layer), shuffled within each layer as ``kind``
    says."""
    matrix = sp.csr_array(matrix, copy=True)
    n_cols = matrix.shape[1]
    bounds = np.flatnonzero(np.r_[True, row_layers[1:] != row_layers[:-1], True])
    if kind == "edges":
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            lo, hi = matrix.indptr[start], matrix.indptr[stop]
            matrix.data[lo:hi] = rng.permutation(matrix.data[lo:hi])
        return matrix
    if kind == "swaps":
        rows = np.repeat(np.arange(matrix.shape[0]), np.diff(matrix.indptr))
        cols = matrix.indices.copy()
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            lo, hi = matrix.indptr[start], matrix.indptr[stop]
            cols[lo:hi] = swap_edges(rows[lo:hi], cols[lo:hi], n_cols, rng)
        return sp.csr_array((matrix.data, (rows, cols)), shape=matrix.shape)
    if kind != "pairs":
        raise ValueError(f"unknown null kind {kind!r}; expected one of {', '.join(NULL_KINDS)}")
    row_parts, col_parts, value_parts = [], [], []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        weights = matrix.data[matrix.indptr[start] : matrix.indptr[stop]]
        cells = rng.choice((stop - start) * n_cols, size=len(weights), replace=False)
        row_parts.append(start + cells // n_cols)
        col_parts.append(cells % n_cols)
        value_parts.append(rng.permutation(weights))
    return sp.csr_array(
        (np.concatenate(value_parts), (np.concatenate(row_parts), np.concatenate(col_parts))),
        shape=matrix.shape,
    )


def swap_edges(
    rows: np.ndarray, cols: np.ndarray, n_cols: int, rng: np.random.Generator, rounds: int = SWAP_ROUNDS
) -> np.ndarray:
    """New columns for the edges (``rows``, ``cols``) after degree-preserving swaps: each round pairs the edges
    at random and exchanges each pair's columns, then takes back the exchanges that would put two edges on one
    (row, column) cell. Vectorised rounds rather than networkx's one swap at a time (``double_edge_swap``, which
    is also not for bipartite graphs): a layer has up to millions of edges and every null sample redoes this."""
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64).copy()
    half = len(cols) // 2
    for _ in range(rounds):
        order = rng.permutation(len(cols))
        a, b = order[:half], order[half : 2 * half]
        new = cols.copy()
        new[a], new[b] = cols[b], cols[a]
        kept = np.ones(half, dtype=bool)
        while True:  # ends: the edges left as they were cannot collide, so each pass takes back a swap
            _, inverse, counts = np.unique(rows * n_cols + new, return_inverse=True, return_counts=True)
            clash = counts[inverse] > 1
            bad = kept & (clash[a] | clash[b])
            if not bad.any():
                break
            kept &= ~bad
            new[a[bad]], new[b[bad]] = cols[a[bad]], cols[b[bad]]
        cols = new
    return cols


def null_statistics(
    matrix: sp.sparray,
    row_layers: np.ndarray,
    statistic: Callable[[sp.csr_array, int], np.ndarray],
    *,
    kinds: Sequence[str],
    n_samples: int,
    seed: Sequence[int],
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """``statistic(null_matrix, clustering_seed)`` on ``n_samples`` shuffles of each kind: kind -> (samples,
    m).

    Every sample has its own seed, derived from ``seed`` (entropy for ``numpy.random.SeedSequence``) with the
    kind and the sample number, so any one of them can be reproduced alone.
    """
    jobs = [(kind, i) for kind in kinds for i in range(n_samples)]
    values: dict[str, list[np.ndarray]] = {kind: [] for kind in kinds}
    for kind, i in track(jobs, "null samples", enabled=progress):
        state = np.random.SeedSequence([*seed, NULL_KINDS.index(kind), i])
        rng = np.random.default_rng(state)
        null = shuffle_bipartite(matrix, row_layers, kind, rng)
        values[kind].append(np.atleast_1d(statistic(null, int(state.generate_state(1)[0]))))
    return {kind: np.array(rows, dtype=np.float64) for kind, rows in values.items()}


def significance(real: float, null: np.ndarray, higher_is_better: bool) -> dict[str, Any]:
    """p = (r + 1)/(n + 1), z, and gap (the distance from the null mean, signed like z) of ``real`` against the
    null values. NaN samples (e.g. a k that a null cannot make) are left out; z is None when the nulls do not
    vary."""
    null = np.asarray(null, np.float64)
    null = null[np.isfinite(null)]
    result: dict[str, Any] = dict.fromkeys(["r", "p", "z", "gap", "null_mean", "null_std"])
    result |= {"real": _num(real), "n": int(len(null))}
    if not len(null) or not np.isfinite(real):
        return result
    mean = float(null.mean())
    std = float(null.std(ddof=1)) if len(null) > 1 else 0.0
    gap = (real - mean) if higher_is_better else (mean - real)
    r = int((null >= real).sum() if higher_is_better else (null <= real).sum())
    return result | {
        "r": r,
        "p": (r + 1) / (len(null) + 1),
        "z": gap / std if std > 0 else None,
        "gap": gap,
        "null_mean": mean,
        "null_std": std,
    }


def _num(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def stability(reference: np.ndarray, others: Sequence[np.ndarray], seeds: Sequence[int]) -> dict[str, Any]:
    """Adjusted Rand index between the partition and those found with other seeds (1 = identical)."""
    from sklearn.metrics import adjusted_rand_score  # scikit-learn takes seconds to import

    scores = [float(adjusted_rand_score(reference, other)) for other in others]
    return {
        "seeds": [int(s) for s in seeds],
        "ari": scores,
        "mean": float(np.mean(scores)) if scores else None,
        "min": float(np.min(scores)) if scores else None,
    }
