"""Class-conditional generative models of penultimate activations, scikit-learn style.

Three models, all with ``fit(X, y)`` returning self and the same sampling surface:

- ``SharedGaussian``: one mean per class and one covariance pooled over classes (VOS; the Gaussian
  discriminant analysis view of a softmax classifier, Lee et al. 2018).
- ``ClassGaussian``: one mean and one full covariance per class (tighter when classes differ in spread;
  needs more data per class).
- ``GaussianMixture``: a scikit-learn Gaussian mixture per class (for classes with several modes).

The dissimilarity knobs: ``sample_lowest(n_keep, n_from)`` keeps the lowest-likelihood ``n_keep`` of
``n_from`` candidates (VOS's ``--select`` of ``--sample-from``); ``sample_tail(n, q)`` samples the lowest-``q``
likelihood tail (``n_from = n / q``); ``sample_at_radius(n, r)`` samples at Mahalanobis distance ``r``.

Arithmetic is float64 numpy: covariances of 100+ dimensions lose digits in float32, and the sizes are small.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from scipy.linalg import solve_triangular

from neuronmap.errors import NeuronmapError

if TYPE_CHECKING:  # scikit-learn takes seconds to import; only the mixture model needs it
    from sklearn.mixture import GaussianMixture as SkMixture

LOG_2PI = math.log(2 * math.pi)
_CHUNK = 65_536  # candidates drawn at once by the generic lowest-likelihood sampler


def _rng(random_state: int | np.random.Generator | None) -> np.random.Generator:
    return (
        random_state if isinstance(random_state, np.random.Generator) else np.random.default_rng(random_state)
    )


def _check_xy(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or len(X) != len(y):
        raise NeuronmapError(
            f"features must be (n, d) with one label each; got {X.shape} and {len(y)} labels"
        )
    if len(X) == 0:
        raise NeuronmapError("no features to fit")
    if not np.isfinite(X).all():
        raise NeuronmapError("features contain NaN or infinite values")
    return X, y


def _unit_sphere(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    u = rng.standard_normal((n, d))
    return u / np.linalg.norm(u, axis=1, keepdims=True)


class _ClassConditional:
    """Shared surface: per-class log-likelihood, Mahalanobis distance and the three samplers."""

    classes_: np.ndarray

    def _index(self, label: object) -> int:
        hits = np.flatnonzero(self.classes_ == label)
        if len(hits) == 0:
            raise NeuronmapError(f"no class {label!r} in the fitted model (classes: {list(self.classes_)})")
        return int(hits[0])

    def fit(self, X: np.ndarray, y: np.ndarray) -> _ClassConditional:
        raise NotImplementedError

    def log_likelihood(self, X: np.ndarray, label: object) -> np.ndarray:
        raise NotImplementedError

    def mahalanobis(self, X: np.ndarray, label: object) -> np.ndarray:
        raise NotImplementedError

    def sample(
        self, n: int, label: object, random_state: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` samples of class ``label`` and their log-likelihoods."""
        raise NotImplementedError

    def sample_at_radius(
        self, n: int, label: object, radius: float, random_state: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` points at Mahalanobis distance ``radius`` from the class (its component, for a mixture)."""
        raise NotImplementedError

    def sample_lowest(
        self,
        n_keep: int,
        n_from: int,
        label: object,
        random_state: int | np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``n_from`` candidates and keep the ``n_keep`` of lowest log-likelihood, lowest first.

        Candidates are drawn in chunks and only the running lowest are kept, so ``n_from`` in the millions
        fits in memory.
        """
        return self._sample_lowest_generic(n_keep, n_from, label, random_state)

    def _sample_lowest_generic(
        self, n_keep: int, n_from: int, label: object, random_state: int | np.random.Generator | None
    ) -> tuple[np.ndarray, np.ndarray]:
        _check_counts(n_keep, n_from)
        rng = _rng(random_state)
        best_x: np.ndarray | None = None
        best_ll = np.zeros(0)
        left = n_from
        while left > 0:
            x, ll = self.sample(min(left, _CHUNK), label, rng)
            left -= len(x)
            x = x if best_x is None else np.concatenate([best_x, x])
            ll = np.concatenate([best_ll, ll])
            keep = np.argsort(ll, kind="stable")[:n_keep]
            best_x, best_ll = x[keep], ll[keep]
        assert best_x is not None
        return best_x, best_ll

    def sample_tail(
        self,
        n: int,
        label: object,
        quantile: float,
        random_state: int | np.random.Generator | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` samples from the lowest-``quantile`` likelihood tail: the lowest ``n`` of ``n / quantile``."""
        if not 0 < quantile <= 1:
            raise NeuronmapError(f"a likelihood quantile must be in (0, 1], got {quantile}")
        return self.sample_lowest(n, max(n, math.ceil(n / quantile)), label, random_state)


def _check_counts(n_keep: int, n_from: int) -> None:
    if n_keep < 1 or n_from < n_keep:
        raise NeuronmapError(f"need 1 <= select <= sample-from, got select={n_keep}, sample-from={n_from}")


class _Gaussians(_ClassConditional):
    """Gaussians given by per-class means and Cholesky factors (shared or not)."""

    means_: np.ndarray
    cholesky_: np.ndarray  # (n_classes, d, d) lower triangular
    log_det_: np.ndarray  # (n_classes,)

    def _set_covariances(self, covariances: np.ndarray, shared: bool = False) -> None:
        d = covariances.shape[-1]
        chol = np.empty_like(covariances)
        for k, cov in enumerate(covariances[:1] if shared else covariances):
            try:
                chol[k] = np.linalg.cholesky(cov)
            except np.linalg.LinAlgError:
                raise NeuronmapError(
                    f"covariance of class {self.classes_[k]!r} is not positive definite; raise reg_covar"
                ) from None
        if shared:
            chol[1:] = chol[0]
        self.cholesky_ = chol
        self.log_det_ = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)
        self.n_features_in_ = d

    def _whiten(self, X: np.ndarray, k: int) -> np.ndarray:
        diff = np.asarray(X, dtype=np.float64) - self.means_[k]
        return solve_triangular(self.cholesky_[k], diff.T, lower=True).T

    def mahalanobis(self, X: np.ndarray, label: object) -> np.ndarray:
        return np.linalg.norm(self._whiten(X, self._index(label)), axis=1)

    def log_likelihood(self, X: np.ndarray, label: object) -> np.ndarray:
        k = self._index(label)
        m2 = (self._whiten(X, k) ** 2).sum(1)
        return self._ll_from_m2(m2, k)

    def _ll_from_m2(self, m2: np.ndarray, k: int) -> np.ndarray:
        return -0.5 * (self.n_features_in_ * LOG_2PI + self.log_det_[k] + m2)

    def _from_white(self, z: np.ndarray, k: int) -> np.ndarray:
        return self.means_[k] + z @ self.cholesky_[k].T

    def sample(self, n, label, random_state=None):
        k = self._index(label)
        z = _rng(random_state).standard_normal((n, self.n_features_in_))
        return self._from_white(z, k), self._ll_from_m2((z**2).sum(1), k)

    def sample_at_radius(self, n, label, radius, random_state=None):
        if radius < 0:
            raise NeuronmapError(f"a Mahalanobis radius must be >= 0, got {radius}")
        k = self._index(label)
        z = radius * _unit_sphere(_rng(random_state), n, self.n_features_in_)
        return self._from_white(z, k), self._ll_from_m2(np.full(n, float(radius) ** 2), k)

    def sample_lowest(self, n_keep, n_from, label, random_state=None):
        """Exact shortcut of the generic sampler: a Gaussian sample is ``mean + L r u`` with ``r^2 ~ chi2(d)``
        independent of the direction ``u``, and its likelihood depends on ``r`` alone. So draw ``n_from``
        radii, keep the largest ``n_keep``, and give them uniform directions: the same distribution as
        drawing ``n_from`` full vectors, at a cost independent of ``d``."""
        _check_counts(n_keep, n_from)
        k = self._index(label)
        rng = _rng(random_state)
        d = self.n_features_in_
        r2 = rng.chisquare(d, size=n_from)
        r2 = np.sort(r2)[::-1][:n_keep]
        z = np.sqrt(r2)[:, None] * _unit_sphere(rng, n_keep, d)
        return self._from_white(z, k), self._ll_from_m2(r2, k)


class SharedGaussian(_Gaussians):
    """Class means with one covariance pooled over classes, as in VOS.

    ``reg_covar`` is added to the diagonal (VOS adds 1e-4 x identity): dead ReLU units have zero variance.
    """

    def __init__(self, reg_covar: float = 1e-4, random_state: int | None = None) -> None:
        self.reg_covar = reg_covar
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> SharedGaussian:
        X, y = _check_xy(X, y)
        self.classes_ = np.unique(y)
        self.means_ = np.stack([X[y == c].mean(0) for c in self.classes_])
        centred = X - self.means_[np.searchsorted(self.classes_, y)]
        cov = centred.T @ centred / len(X) + self.reg_covar * np.eye(X.shape[1])
        self.covariance_ = cov
        self._set_covariances(np.broadcast_to(cov, (len(self.classes_), *cov.shape)).copy(), shared=True)
        return self


class ClassGaussian(_Gaussians):
    """One mean and one full covariance per class (maximum likelihood, plus ``reg_covar`` on the diagonal)."""

    def __init__(self, reg_covar: float = 1e-4, random_state: int | None = None) -> None:
        self.reg_covar = reg_covar
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> ClassGaussian:
        X, y = _check_xy(X, y)
        self.classes_ = np.unique(y)
        means, covs = [], []
        for c in self.classes_:
            Xc = X[y == c]
            if len(Xc) < 2:
                raise NeuronmapError(f"class {c!r} has {len(Xc)} feature vector(s); a covariance needs 2")
            means.append(Xc.mean(0))
            centred = Xc - means[-1]
            covs.append(centred.T @ centred / len(Xc) + self.reg_covar * np.eye(X.shape[1]))
        self.means_ = np.stack(means)
        self.covariances_ = np.stack(covs)
        self._set_covariances(self.covariances_)
        return self


class GaussianMixture(_ClassConditional):
    """A scikit-learn ``GaussianMixture`` per class (full covariances), sampled with our own generator.

    ``n_components`` is capped by the class size. Sampling draws a component by weight, then from that
    component; Mahalanobis distance is to the nearest component.
    """

    def __init__(
        self,
        n_components: int = 3,
        reg_covar: float = 1e-4,
        max_iter: int = 200,
        random_state: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> GaussianMixture:
        from sklearn.mixture import GaussianMixture as SkMixture

        X, y = _check_xy(X, y)
        if self.n_components < 1:
            raise NeuronmapError(f"a mixture needs at least 1 component, got {self.n_components}")
        self.classes_ = np.unique(y)
        self.mixtures_ = []
        for c in self.classes_:
            Xc = X[y == c]
            if len(Xc) < 2:
                raise NeuronmapError(f"class {c!r} has {len(Xc)} feature vector(s); a mixture needs 2")
            gm = SkMixture(
                n_components=min(self.n_components, len(Xc)),
                covariance_type="full",
                reg_covar=self.reg_covar,
                max_iter=self.max_iter,
                random_state=self.random_state,
            )
            self.mixtures_.append(gm.fit(Xc))
        self.n_features_in_ = X.shape[1]
        return self

    def log_likelihood(self, X: np.ndarray, label: object) -> np.ndarray:
        return self.mixtures_[self._index(label)].score_samples(np.asarray(X, dtype=np.float64))

    def mahalanobis(self, X: np.ndarray, label: object) -> np.ndarray:
        gm = self.mixtures_[self._index(label)]
        X = np.asarray(X, dtype=np.float64)
        dists = []
        for mean, chol in zip(gm.means_, np.linalg.cholesky(gm.covariances_), strict=True):
            dists.append(np.linalg.norm(solve_triangular(chol, (X - mean).T, lower=True).T, axis=1))
        return np.min(dists, axis=0)

    def _components(self, n: int, gm: SkMixture, rng: np.random.Generator) -> np.ndarray:
        return rng.choice(len(gm.weights_), size=n, p=gm.weights_)

    def _place(self, gm: SkMixture, comp: np.ndarray, z: np.ndarray) -> np.ndarray:
        # One matrix product per component: indexing the Cholesky factors per sample would need n x d x d.
        x = np.empty_like(z)
        for k, chol in enumerate(np.linalg.cholesky(gm.covariances_)):
            rows = comp == k
            x[rows] = gm.means_[k] + z[rows] @ chol.T
        return x

    def sample(self, n, label, random_state=None):
        gm = self.mixtures_[self._index(label)]
        rng = _rng(random_state)
        comp = self._components(n, gm, rng)
        x = self._place(gm, comp, rng.standard_normal((n, self.n_features_in_)))
        return x, gm.score_samples(x)

    def sample_at_radius(self, n, label, radius, random_state=None):
        if radius < 0:
            raise NeuronmapError(f"a Mahalanobis radius must be >= 0, got {radius}")
        gm = self.mixtures_[self._index(label)]
        rng = _rng(random_state)
        comp = self._components(n, gm, rng)
        x = self._place(gm, comp, radius * _unit_sphere(rng, n, self.n_features_in_))
        return x, gm.score_samples(x)


GENERATIVE = {"shared": SharedGaussian, "class": ClassGaussian, "gmm": GaussianMixture}


def make_generative(
    name: str, *, reg_covar: float = 1e-4, n_components: int = 3, random_state: int | None = None
) -> _ClassConditional:
    """``shared`` (VOS), ``class`` (per-class full covariance) or ``gmm`` (per-class mixture)."""
    if name == "shared":
        return SharedGaussian(reg_covar=reg_covar, random_state=random_state)
    if name == "class":
        return ClassGaussian(reg_covar=reg_covar, random_state=random_state)
    if name == "gmm":
        return GaussianMixture(n_components=n_components, reg_covar=reg_covar, random_state=random_state)
    raise NeuronmapError(f"unknown generative model '{name}' (choose from: {', '.join(GENERATIVE)})")
