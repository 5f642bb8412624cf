"""Where clusters go on the cluster map: a deterministic 2-D embedding of their token profiles.

Clusters whose token distributions are alike should lie close. Profiles (clusters x tokens, |edge weight|
summed) are L2-normalised, so that Euclidean distance is a function of cosine similarity, reduced to at most
``SVD_DIMS`` dimensions with a seeded truncated SVD, and laid out with t-SNE (cosine metric, PCA start, fixed
seed, ``TSNE_ITERATIONS`` steps, one thread so that sums are done in one order) up to ``TSNE_MAX`` clusters; beyond that, or below
``TSNE_MIN``, the first two principal components (classical MDS of the same distances) are used instead.
Clusters with identical profiles (single neurons on the same token, common within layers) would hide each other:
they are spread evenly on a small circle around their common place.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

SVD_DIMS = 50
TSNE_MIN = 5
TSNE_MAX = 1500  # t-SNE costs about ten seconds per thousand clusters on one core
SPREAD = 0.015  # clusters with identical profiles are spread on a circle of this fraction of the map
TSNE_ITERATIONS = 500


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def _pca2(x: np.ndarray) -> np.ndarray:
    """First two principal components, each signed so that its largest loading is positive (SVD signs are
    otherwise arbitrary); missing components are zero."""
    centred = x - x.mean(0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    coords = np.zeros((len(x), 2))
    for j in range(min(2, len(s))):
        col = u[:, j] * s[j]
        coords[:, j] = col * (1.0 if col[np.argmax(np.abs(col))] >= 0 else -1.0)
    return coords


def _spread_duplicates(xy: np.ndarray, unit: sp.csr_array) -> np.ndarray:
    """Rows of ``unit`` that are equal get their common place's circle, in row order."""
    unit.sort_indices()
    same: dict[tuple[bytes, bytes], list[int]] = {}
    for i in range(unit.shape[0]):
        lo, hi = unit.indptr[i], unit.indptr[i + 1]
        same.setdefault((unit.indices[lo:hi].tobytes(), np.round(unit.data[lo:hi], 9).tobytes()), []).append(
            i
        )
    extent = float(np.ptp(xy, axis=0).max()) if len(xy) > 1 else 0.0
    out = xy.copy()
    for members in same.values():
        if len(members) > 1:
            angle = 2 * np.pi * np.arange(len(members)) / len(members)
            radius = SPREAD * (extent or 1.0) * np.sqrt(len(members))
            out[members] = xy[members[0]] + radius * np.c_[np.cos(angle), np.sin(angle)]
    return out


def embed_profiles(profiles: sp.sparray, random_state: int = 0) -> np.ndarray:
    """(clusters, 2) coordinates for the rows of ``profiles``."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    n, m = profiles.shape
    if n == 0:
        return np.zeros((0, 2))
    unit = sp.csr_array(profiles, dtype=np.float64)
    norms = np.sqrt(np.asarray(unit.multiply(unit).sum(axis=1)).ravel())
    unit = sp.csr_array(sp.diags_array(1.0 / np.where(norms > 0, norms, 1.0)) @ unit)
    with threadpool_limits(1):
        if min(n, m) > SVD_DIMS:
            reduced = TruncatedSVD(SVD_DIMS, algorithm="randomized", random_state=random_state).fit_transform(
                unit
            )
        else:
            reduced = unit.toarray()
        reduced = _unit_rows(reduced)
        if not TSNE_MIN <= n <= TSNE_MAX:
            return _spread_duplicates(_pca2(reduced), unit)
        perplexity = float(min(30.0, (n - 1) / 3))
        xy = TSNE(
            2,
            perplexity=perplexity,
            metric="cosine",
            init="pca",
            max_iter=TSNE_ITERATIONS,
            random_state=random_state,
        ).fit_transform(reduced)
    return _spread_duplicates(xy, unit)
