"""Community detection on the neuron graph, as scikit-learn-style estimators.

Configuration goes in ``__init__``, ``fit(graph)`` returns ``self``, and the partition is ``labels_`` (one int
per node, renumbered by :func:`canonical_labels` so that equal partitions have equal labels). ``random_state``
is an int seed (or None). Nodes without edges always end up alone, as python-louvain leaves them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

import graspologic_native as gn
import networkx as nx
import numpy as np
import scipy.sparse as sp
from community import community_louvain
from scipy.linalg import eigh
from scipy.sparse.linalg import LinearOperator, eigsh
from threadpoolctl import threadpool_limits

from neuronmap.graph.quality import Graph, degrees, ncut
from neuronmap.progress import track

DENSE_EIGEN_MAX = 1500  # below this many nodes a dense eigendecomposition is both faster and exact


def _small_problem_threads(n: int) -> contextlib.AbstractContextManager:
    """One BLAS/OpenMP thread for small problems: thread start-up and spinning cost more than the work, and on
    a busy machine a 100x100 eigendecomposition goes from milliseconds to a second."""
    return threadpool_limits(1) if n <= DENSE_EIGEN_MAX else contextlib.nullcontext()


def canonical_labels(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0, 1, ... by decreasing size, ties by first node: a partition's canonical form."""
    labels = np.asarray(labels)
    if not len(labels):
        return labels.astype(np.int32)
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    first = np.full(len(counts), len(labels))
    np.minimum.at(first, inverse, np.arange(len(labels)))
    rank = np.empty(len(counts), np.int32)
    rank[np.lexsort((first, -counts))] = np.arange(len(counts), dtype=np.int32)
    return rank[inverse]


def to_networkx(graph: sp.sparray) -> nx.Graph:
    """The equivalent networkx graph: nodes 0..n-1 in order, then edges (i < j) in row-major order, so that
    order-sensitive algorithms (python-louvain) see one canonical graph."""
    upper = sp.triu(sp.coo_array(graph), k=1).tocoo()
    order = np.lexsort((upper.col, upper.row))
    result = nx.Graph()
    result.add_nodes_from(range(graph.shape[0]))
    result.add_weighted_edges_from(
        zip(upper.row[order].tolist(), upper.col[order].tolist(), upper.data[order].tolist(), strict=True)
    )
    return result


class Louvain:
    """python-louvain's ``best_partition`` (the original method), seeded."""

    def __init__(self, resolution: float = 1.0, random_state: int | None = None) -> None:
        self.resolution = resolution
        self.random_state = random_state

    def fit(self, graph: sp.sparray) -> Louvain:
        parts = community_louvain.best_partition(
            to_networkx(graph), weight="weight", resolution=self.resolution, random_state=self.random_state
        )
        self.labels_ = canonical_labels(np.array([parts[i] for i in range(graph.shape[0])]))
        return self


class Leiden:
    """graspologic-native's Leiden on the CSR arrays directly, maximising modularity; same seed, same
    partition."""

    def __init__(
        self,
        resolution: float = 1.0,
        n_iterations: int = 2,
        randomness: float = 0.001,
        random_state: int | None = None,
    ) -> None:
        self.resolution = resolution
        self.n_iterations = n_iterations
        self.randomness = randomness
        self.random_state = random_state

    def fit(self, graph: sp.sparray) -> Leiden:
        graph = sp.csr_array(graph)
        n = graph.shape[0]
        if graph.nnz == 0:
            self.labels_ = np.arange(n, dtype=np.int32)
            return self
        _, parts = gn.leiden_csr(
            graph.indptr.astype(np.int64),
            graph.indices.astype(np.int32),
            graph.data.astype(np.float64),
            n,
            resolution=self.resolution,
            randomness=self.randomness,
            iterations=self.n_iterations,
            use_modularity=True,
            seed=self.random_state,
        )
        labels = np.empty(n, np.int64)
        labels[np.fromiter(parts.keys(), np.int64, len(parts))] = np.fromiter(
            parts.values(), np.int64, len(parts)
        )
        self.labels_ = canonical_labels(labels)
        return self


def spectral_embedding(graph: Graph, n_components: int, random_state: int | None = None) -> np.ndarray:
    """The ``n_components`` leading eigenvectors of the normalised adjacency D^-1/2 W D^-1/2 (the smallest of
    the normalised Laplacian), rescaled by D^-1/2 (Shi-Malik), signs fixed. Computed once, by ``eigsh`` on an
    operator, so ``graph`` may be a :class:`GramOperator` that is never materialised. Isolated nodes get zero
    rows."""
    deg = degrees(graph)
    inv_sqrt = np.where(deg > 0, 1.0 / np.sqrt(np.where(deg > 0, deg, 1.0)), 0.0)
    n = len(deg)
    n_components = min(n_components, n)

    def normalised(x: np.ndarray) -> np.ndarray:
        scale = inv_sqrt if x.ndim == 1 else inv_sqrt[:, None]
        return scale * np.asarray(graph @ (scale * x))

    if n <= DENSE_EIGEN_MAX or n_components >= n - 1:
        with _small_problem_threads(n):
            values, vectors = eigh(normalised(np.eye(n)))
    else:
        operator = LinearOperator((n, n), matvec=normalised, matmat=normalised, dtype=np.float64)
        v0 = np.random.default_rng(random_state).uniform(-1.0, 1.0, n)
        values, vectors = eigsh(operator, k=n_components, which="LA", v0=v0, tol=1e-10)
    vectors = vectors[:, np.argsort(-values, kind="stable")[:n_components]]
    signs = np.sign(vectors[np.abs(vectors).argmax(axis=0), np.arange(vectors.shape[1])])
    return vectors * np.where(signs == 0, 1.0, signs) * inv_sqrt[:, None]


class SpectralSweep:
    """Spectral clustering for every k of ``k_range`` from one eigendecomposition: k-means on the first k
    columns of :func:`spectral_embedding`. Learned: ``k_values_`` (the k that fit, those <= the non-isolated
    nodes), ``labels_`` (one partition per row) and ``ncut_`` (the n-cut of each)."""

    def __init__(
        self,
        k_range: Iterable[int] = range(2, 51),
        n_init: int = 4,
        random_state: int | None = None,
        progress: bool = False,
    ) -> None:
        self.k_range = k_range
        self.n_init = n_init
        self.random_state = random_state
        self.progress = progress

    def fit(self, graph: Graph) -> SpectralSweep:
        from sklearn.cluster import KMeans  # scikit-learn takes seconds to import; only spectral needs it

        active = degrees(graph) > 0
        n_active = int(active.sum())
        ks = [k for k in self.k_range if 1 <= k <= n_active]
        labels = np.zeros((len(ks), graph.shape[0]), np.int32)
        if ks:
            embedding = spectral_embedding(graph, max(ks), self.random_state)[active]
            # Isolated nodes: each its own cluster, numbered after the k-means clusters.
            lonely = np.arange(int((~active).sum()))
            for row, k in enumerate(track(ks, "k-means over k", enabled=self.progress)):
                kmeans = KMeans(n_clusters=k, n_init=self.n_init, random_state=self.random_state)
                with _small_problem_threads(n_active):
                    labels[row, active] = kmeans.fit(embedding[:, :k]).labels_
                labels[row, ~active] = k + lonely
                labels[row] = canonical_labels(labels[row])
        self.k_values_ = np.array(ks, np.int64)
        self.labels_ = labels
        self.ncut_ = np.array([ncut(graph, row) for row in labels])
        return self


class Spectral:
    """Spectral clustering into ``n_clusters`` (a one-k :class:`SpectralSweep`)."""

    def __init__(self, n_clusters: int = 8, n_init: int = 4, random_state: int | None = None) -> None:
        self.n_clusters = n_clusters
        self.n_init = n_init
        self.random_state = random_state

    def fit(self, graph: Graph) -> Spectral:
        sweep = SpectralSweep([self.n_clusters], self.n_init, self.random_state).fit(graph)
        if not len(sweep.k_values_):
            raise ValueError(f"cannot make {self.n_clusters} clusters from {graph.shape[0]} nodes")
        self.labels_ = sweep.labels_[0]
        return self
