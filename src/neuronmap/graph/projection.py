"""Projections of the neuron<->token graph onto neurons: the neuron<->neuron graph that gets clustered.

Every projection is a Gram matrix ``W = A Aᵀ`` (off the diagonal) of a factor ``A`` (neurons x tokens) derived
from the bipartite matrix ``B``, with ``d_k`` the number of neurons linked to token ``k``:

- ``collaboration`` (Newman; networkx's ``collaboration_weighted_projected_graph``):
  ``w(u,v) = Σ_k 1/(d_k - 1)`` over shared tokens. Edge strengths are ignored.
- ``weighted``: ``w(u,v) = Σ_k b_uk b_vk · d_k / ((d_k - 1) S_k)`` with ``S_k = Σ_u |b_uk|``. Each token hands
  out its strength: neuron u's share of token k is split among the other neurons in proportion to their
  strength, so when a token's weights are equal u receives exactly ``b_uk`` from it, as in Newman's scheme
  each author receives one unit per paper. With unit weights it is ``collaboration``.
- ``cosine``: cosine similarity of the neurons' token profiles (rows of ``B``).

The neuron graph keeps positive weights only. Hub tokens make ``W`` dense (a token on d neurons makes d²/2
pairs), so besides the exact product the projection can be computed in blocks of rows keeping each neuron's
top ``neighbors`` (ties to the lower index) and/or the weights ``>= threshold``; the result is the union of
the kept pairs, so it stays symmetric. In a block, high-degree token columns are multiplied densely (BLAS) and
the rest as sparse products, which keeps both time and memory bounded on hub-heavy graphs; a block without hub
tokens whose product is sparse is pruned as a sparse matrix, so small traces stay fast on big models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.sparse.linalg import LinearOperator

from neuronmap.graph.bipartite import bipartite_matrix
from neuronmap.graph.config import PROJECTIONS

BLOCK_CELLS = 1 << 23  # dense cells of one row block: 3 buffers of 64 + 64 + 8 MB
DENSE_BYTES = 1 << 28  # at most 256 MB of hub token columns held dense
HUB_MIN_DEGREE = 64  # below this a token column is always cheaper as a sparse product
HUB_FRACTION = 1 / 16  # ... above n/16 neurons the dense product wins (14-28 GFLOP/s vs 20-50 ns a pair)
SPARSE_BLOCK_FILL = 0.05  # a block of rows this sparse is pruned as a sparse matrix, without a dense pass


def gram_factor(matrix: sp.sparray, projection: str) -> sp.csr_array:
    """The factor ``A`` of a projection, ``W = A Aᵀ`` off the diagonal (see the module docstring)."""
    if projection not in PROJECTIONS:
        raise ValueError(f"unknown projection {projection!r}; expected one of {', '.join(PROJECTIONS)}")
    matrix = sp.csr_array(matrix, dtype=np.float64)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    if projection == "cosine":
        norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
        factor = sp.diags_array(1.0 / np.where(norms > 0, norms, 1.0)) @ matrix
    else:
        degree = np.bincount(matrix.indices, minlength=matrix.shape[1]).astype(np.float64)
        shared = degree > 1
        scale = np.zeros(matrix.shape[1])
        if projection == "collaboration":
            matrix = sp.csr_array(
                (np.ones_like(matrix.data), matrix.indices, matrix.indptr), shape=matrix.shape
            )
            scale[shared] = 1.0 / (degree[shared] - 1.0)
        else:
            strength = np.bincount(matrix.indices, np.abs(matrix.data), minlength=matrix.shape[1])
            scale[shared] = degree[shared] / ((degree[shared] - 1.0) * strength[shared])
        factor = matrix @ sp.diags_array(np.sqrt(scale))
    factor = sp.csr_array(factor)
    factor.eliminate_zeros()
    factor.sort_indices()
    return factor


def _symmetric(n: int, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> sp.csr_array:
    """Union of kept (row, col) pairs, given in row order, as a symmetric matrix. A pair kept from both ends
    takes the value computed in its lower row (the first one met), so the result is exactly symmetric whatever
    the summation order of each row was."""
    low, high = np.minimum(rows, cols), np.maximum(rows, cols)
    key = low.astype(np.int64) * n + high
    order = np.argsort(key, kind="stable")
    key = key[order]
    first = order[np.r_[True, key[1:] != key[:-1]]] if len(key) else order
    low, high, values = low[first], high[first], values[first]
    return sp.csr_array((np.r_[values, values], (np.r_[low, high], np.r_[high, low])), shape=(n, n))


def _nonzero(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.nonzero`` of a sparse, C-contiguous 2-D mask, about 3x faster: scans it eight cells at a time."""
    flat = mask.reshape(-1)
    whole = len(flat) // 8 * 8
    hits = np.flatnonzero(flat[:whole].view(np.uint64))
    cells = (hits[:, None] * 8 + np.arange(8)).ravel()
    cells = np.r_[cells[flat[cells]], whole + np.flatnonzero(flat[whole:])]
    return np.divmod(cells, mask.shape[1])


def _floor(threshold: float | None) -> float:
    """Kept weights are ``> floor``: positive, and ``>= threshold`` when there is one."""
    return 0.0 if threshold is None or threshold <= 0 else float(np.nextafter(threshold, -np.inf))


def _top_per_row(
    rows: np.ndarray, cols: np.ndarray, values: np.ndarray, neighbors: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``neighbors`` largest values of each row, ties going to the lower column, so that the choice never
    depends on how a selection routine breaks ties."""
    if neighbors is None:
        return rows, cols, values
    order = np.lexsort((cols, -values, rows))
    rows, cols, values = rows[order], cols[order], values[order]
    keep = np.arange(len(rows)) - np.searchsorted(rows, rows) < neighbors
    return rows[keep], cols[keep], values[keep]


def _select_dense(
    block: np.ndarray, mask: np.ndarray, neighbors: int | None, threshold: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, values) to keep from a dense block; ``mask`` is a preallocated buffer of its shape.

    Two passes over the block: a per-row cut estimated from a strided sample of columns (about 4x
    ``neighbors`` cells lie above it), then an exact sort of the cells above the cut. A row whose cut turns out
    too high (fewer than ``neighbors`` cells above it) falls back to every cell above the floor.
    """
    floor, n = _floor(threshold), block.shape[1]
    if neighbors is None or neighbors >= n:
        rows, cols = _nonzero(np.greater(block, floor, out=mask))
        return rows, cols, block[rows, cols]
    stride = max(1, n // (16 * neighbors))
    sample = block[:, ::stride]
    rank = min(sample.shape[1], -(-4 * neighbors // stride))
    cut = np.maximum(np.partition(sample, sample.shape[1] - rank, axis=1)[:, sample.shape[1] - rank], floor)
    rows, cols = _nonzero(np.greater(block, cut[:, None], out=mask))
    short = np.flatnonzero((np.bincount(rows, minlength=len(block)) < neighbors) & (cut > floor))
    if len(short):
        again = np.isin(rows, short)
        extra_rows, extra_cols = np.nonzero(block[short] > floor)
        rows, cols = np.r_[rows[~again], short[extra_rows]], np.r_[cols[~again], extra_cols]
    return _top_per_row(rows, cols, block[rows, cols], neighbors)


def _select_sparse(
    block: sp.csr_array, start: int, neighbors: int | None, threshold: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, values) to keep from a sparse block of rows ``start...``."""
    rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
    keep = (block.data > _floor(threshold)) & (rows + start != block.indices)
    return _top_per_row(rows[keep], block.indices[keep], block.data[keep], neighbors)


def _hub_columns(factor: sp.csr_array) -> np.ndarray:
    n = factor.shape[0]
    degree = np.bincount(factor.indices, minlength=factor.shape[1])
    candidates = np.flatnonzero(degree >= max(HUB_MIN_DEGREE, n * HUB_FRACTION))
    most = DENSE_BYTES // (8 * max(n, 1))
    if len(candidates) > most:
        candidates = candidates[np.argsort(-degree[candidates], kind="stable")[:most]]
    return np.sort(candidates)


@dataclass(frozen=True)
class GramBlocks:
    """The factor of a blocked projection, split for row-block products: ``rest`` (sparse token columns) and
    its transpose, ``dense`` (hub token columns, or None) and ``step`` (rows per block). It is what a Ray task
    receives; :func:`gram_rows` computes any range of block-aligned rows from it."""

    rest: sp.csr_array
    rest_t: sp.csr_array
    dense: np.ndarray | None
    step: int

    @property
    def n(self) -> int:
        return self.rest.shape[0]

    def ranges(self, parts: int = 1) -> list[tuple[int, int]]:
        """Split the rows into about ``parts`` ranges of whole blocks (the same blocks as one range has)."""
        blocks = -(-self.n // self.step)
        if blocks == 0:
            return [(0, 0)]
        per = -(-blocks // max(1, min(parts, blocks)))
        return [(b * self.step, min(self.n, (b + per) * self.step)) for b in range(0, blocks, per)]


def gram_blocks(factor: sp.sparray) -> GramBlocks:
    """Split ``factor`` into hub columns (held dense) and the rest (sparse), and choose the block size."""
    factor = sp.csr_array(factor)
    n = factor.shape[0]
    hubs = _hub_columns(factor)
    rest_mask = np.ones(factor.shape[1], bool)
    rest_mask[hubs] = False
    dense = factor[:, hubs].toarray() if len(hubs) else None
    rest = sp.csr_array(factor[:, np.flatnonzero(rest_mask)])
    step = max(1, min(n, BLOCK_CELLS // max(n, 1)))
    return GramBlocks(rest, sp.csr_array(rest.T), dense, step)


def gram_rows(
    blocks: GramBlocks, start: int, stop: int, neighbors: int | None, threshold: float | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The kept (rows, cols, values) of rows ``start:stop`` of ``W`` (block-aligned ``start``), block by block."""
    n, step, dense = blocks.n, blocks.step, blocks.dense
    size = min(step, stop - start)
    # Reused buffers (pages are only touched by dense blocks): fresh pages for every block cost more than the
    # arithmetic.
    block_buffer, scratch_buffer, mask_buffer = (
        np.empty((size, n)),
        np.empty((size, n)),
        np.empty((size, n), bool),
    )
    kept_rows, kept_cols, kept_values = [], [], []
    for first in range(start, stop, step):
        last = min(stop, first + step)
        partial = blocks.rest[first:last] @ blocks.rest_t
        if dense is None and partial.nnz <= SPARSE_BLOCK_FILL * partial.shape[0] * n:
            rows, cols, values = _select_sparse(partial, first, neighbors, threshold)
        else:
            block = partial.toarray(out=block_buffer[: last - first])
            if dense is not None:
                block += np.matmul(dense[first:last], dense.T, out=scratch_buffer[: last - first])
            block[np.arange(last - first), np.arange(first, last)] = 0.0
            rows, cols, values = _select_dense(block, mask_buffer[: last - first], neighbors, threshold)
        kept_rows.append(rows + first)
        kept_cols.append(cols)
        kept_values.append(values)
    if not kept_rows:
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0)
    return np.concatenate(kept_rows), np.concatenate(kept_cols), np.concatenate(kept_values)


class BlockRunner(Protocol):
    """Runs the row ranges of a blocked projection somewhere (e.g. as Ray tasks) and returns their kept
    (rows, cols, values) in the order of ``ranges``."""

    def gram_rows(
        self,
        blocks: GramBlocks,
        ranges: list[tuple[int, int]],
        neighbors: int | None,
        threshold: float | None,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]: ...

    def parts(self, blocks: GramBlocks) -> int: ...


def gram_graph(
    factor: sp.sparray,
    neighbors: int | None = None,
    threshold: float | None = None,
    runner: BlockRunner | None = None,
) -> sp.csr_array:
    """The neuron graph ``W = A Aᵀ`` without its diagonal, positive weights only.

    With neither ``neighbors`` nor ``threshold`` it is the exact sparse product. Otherwise rows are computed
    in blocks and pruned as they come, so memory is bounded by the block size, not by the density of ``W``.
    A ``runner`` (e.g. :class:`neuronmap.graph.ray_blocks.RayBlocks`) computes ranges of blocks elsewhere; the
    blocks and what each keeps are the same as here, so the graph is the same.
    """
    factor = sp.csr_array(factor)
    n = factor.shape[0]
    if neighbors is None and threshold is None:
        # Exactly symmetric as it is: (u, v) and (v, u) sum the same products over shared tokens in the same
        # (sorted) token order.
        product = sp.csr_array(factor @ factor.T)
        rows = np.repeat(np.arange(n), np.diff(product.indptr))
        product.data[(rows == product.indices) | (product.data < 0)] = 0.0
        product.eliminate_zeros()
        product.sort_indices()
        return product

    blocks = gram_blocks(factor)
    if runner is None:
        kept = [gram_rows(blocks, 0, n, neighbors, threshold)]
    else:
        kept = runner.gram_rows(blocks, blocks.ranges(runner.parts(blocks)), neighbors, threshold)
    rows, cols, values = (np.concatenate(parts) for parts in zip(*kept, strict=True))
    return _symmetric(n, rows, cols, values)


def project_matrix(
    matrix: sp.sparray,
    projection: str = "weighted",
    neighbors: int | None = 64,
    threshold: float | None = None,
) -> sp.csr_array:
    """Project a bipartite matrix (rows x columns) onto its rows; see :func:`gram_graph` for the pruning."""
    return gram_graph(gram_factor(matrix, projection), neighbors, threshold)


def project(
    edges: pd.DataFrame,
    projection: str = "weighted",
    neighbors: int | None = 64,
    threshold: float | None = None,
) -> tuple[sp.csr_array, pd.DataFrame]:
    """Project an edges table (layer, neuron, token_id, weight) onto neurons.

    Returns the symmetric neuron graph as a CSR matrix and its neuron index (a DataFrame of layer, neuron per
    row). ``neighbors=None`` (and no threshold) gives the exact projection, for graphs small enough to hold
    it.
    """
    matrix, neurons, _ = bipartite_matrix(edges)
    return project_matrix(matrix, projection, neighbors, threshold), neurons


def gram_nnz_bound(factor: sp.sparray) -> int:
    """An upper bound on the entries of ``A Aᵀ``: the pairs that shared tokens can make."""
    degree = np.bincount(sp.csr_array(factor).indices, minlength=factor.shape[1]).astype(np.int64)
    return int(min((degree**2).sum(), factor.shape[0] ** 2))


class GramOperator(LinearOperator):
    """``W = A Aᵀ`` without its diagonal, applied as ``A (Aᵀ x)`` so that a projection too large to
    materialise can still be used by eigensolvers and by the n-cut (which reads ``A`` directly)."""

    def __init__(self, factor: sp.sparray) -> None:
        self.factor = sp.csr_array(factor, dtype=np.float64)
        self.factor_t = sp.csr_array(self.factor.T)
        self.diagonal = np.asarray(self.factor.multiply(self.factor).sum(axis=1)).ravel()
        n = self.factor.shape[0]
        super().__init__(dtype=np.dtype(np.float64), shape=(n, n))

    def _matvec(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x).reshape(-1)
        return self.factor @ (self.factor_t @ x) - self.diagonal * x

    def _matmat(self, x: np.ndarray) -> np.ndarray:
        return self.factor @ (self.factor_t @ x) - self.diagonal[:, None] * x

    def _adjoint(self) -> GramOperator:
        return self
