"""Generative models of penultimate features, each checked against an independent reference: empirical
moments of many samples, scipy's multivariate normal and Mahalanobis distance, and brute-force selection."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import mahalanobis as scipy_mahalanobis
from scipy.stats import ks_2samp, multivariate_normal

from neuronmap.errors import NeuronmapError
from neuronmap.outliers.generative import ClassGaussian, GaussianMixture, SharedGaussian, make_generative
from neuronmap.outliers.vos import VirtualOutlierSynthesizer

D = 4


def _data(seed: int = 0, n: int = 400):
    """Two classes with different means and (for ClassGaussian) different covariances."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, D)) @ np.diag([1.0, 0.5, 2.0, 0.3]) + np.array([1.0, -2.0, 0.0, 3.0])
    mix = rng.normal(size=(D, D)) * 0.4 + np.eye(D)
    b = rng.normal(size=(n, D)) @ mix + np.array([-3.0, 1.0, 2.0, 0.0])
    return np.concatenate([a, b]), np.array(["a"] * n + ["b"] * n)


@pytest.mark.parametrize("cls", [SharedGaussian, ClassGaussian])
def test_gaussian_samples_match_the_fitted_moments(cls):
    X, y = _data()
    model = cls(reg_covar=1e-6).fit(X, y)
    for k, label in enumerate(model.classes_):
        samples, _ = model.sample(200_000, label, random_state=1)
        cov = model.cholesky_[k] @ model.cholesky_[k].T
        np.testing.assert_allclose(samples.mean(0), model.means_[k], atol=0.02)
        np.testing.assert_allclose(np.cov(samples.T), cov, atol=0.03 * np.abs(cov).max())


def test_fitted_parameters_are_the_empirical_ones():
    X, y = _data()
    shared = SharedGaussian(reg_covar=0.0).fit(X, y)
    np.testing.assert_allclose(shared.means_[0], X[y == "a"].mean(0))
    centred = np.concatenate([X[y == "a"] - X[y == "a"].mean(0), X[y == "b"] - X[y == "b"].mean(0)])
    np.testing.assert_allclose(shared.covariance_, np.cov(centred.T, bias=True))
    per_class = ClassGaussian(reg_covar=0.0).fit(X, y)
    np.testing.assert_allclose(per_class.covariances_[1], np.cov(X[y == "b"].T, bias=True))


@pytest.mark.parametrize("cls", [SharedGaussian, ClassGaussian])
def test_log_likelihood_and_mahalanobis_match_scipy(cls):
    X, y = _data()
    model = cls().fit(X, y)
    points = np.random.default_rng(3).normal(size=(7, D)) * 2
    for k, label in enumerate(model.classes_):
        cov = model.cholesky_[k] @ model.cholesky_[k].T
        reference = multivariate_normal(model.means_[k], cov).logpdf(points)
        np.testing.assert_allclose(model.log_likelihood(points, label), reference, rtol=1e-10)
        inv = np.linalg.inv(cov)
        expected = [scipy_mahalanobis(p, model.means_[k], inv) for p in points]
        np.testing.assert_allclose(model.mahalanobis(points, label), expected, rtol=1e-9)


def test_sample_returns_the_likelihood_of_its_samples():
    X, y = _data()
    for model in (
        SharedGaussian().fit(X, y),
        ClassGaussian().fit(X, y),
        GaussianMixture(2, random_state=0).fit(X, y),
    ):
        x, ll = model.sample(50, "b", random_state=0)
        np.testing.assert_allclose(ll, model.log_likelihood(x, "b"), rtol=1e-9)


def test_mixture_samples_match_the_mixture_moments():
    X, y = _data()
    model = GaussianMixture(n_components=2, random_state=0).fit(X, y)
    gm = model.mixtures_[0]
    mean = gm.weights_ @ gm.means_
    second = sum(
        w * (c + np.outer(m, m)) for w, m, c in zip(gm.weights_, gm.means_, gm.covariances_, strict=True)
    )
    samples, _ = model.sample(200_000, "a", random_state=2)
    np.testing.assert_allclose(samples.mean(0), mean, atol=0.03)
    np.testing.assert_allclose(np.cov(samples.T), second - np.outer(mean, mean), atol=0.06)


@pytest.mark.parametrize("name", ["shared", "class", "gmm"])
def test_generic_selection_keeps_the_lowest_likelihood_candidates(name):
    X, y = _data()
    model = make_generative(name, random_state=0).fit(X, y)
    candidates, ll_all = model.sample(500, "a", random_state=5)
    kept, ll_kept = model._sample_lowest_generic(20, 500, "a", 5)
    np.testing.assert_allclose(np.sort(ll_kept), np.sort(ll_all)[:20])
    rest = np.setdiff1d(ll_all, ll_kept)
    assert ll_kept.max() <= rest.min()
    np.testing.assert_allclose(model.log_likelihood(kept, "a"), ll_kept, rtol=1e-9)


def test_gaussian_radial_shortcut_has_the_generic_distribution():
    X, y = _data()
    model = SharedGaussian().fit(X, y)
    fast = np.concatenate([model.sample_lowest(1, 50, "a", s)[1] for s in range(300)])
    slow = np.concatenate([model._sample_lowest_generic(1, 50, "a", 10_000 + s)[1] for s in range(300)])
    assert ks_2samp(fast, slow).pvalue > 0.001
    # Directions stay uniform: the kept points' whitened mean is near zero.
    kept, _ = model.sample_lowest(2000, 20_000, "a", random_state=0)
    white = model._whiten(kept, 0)
    assert np.abs(white.mean(0)).max() < 0.15 * np.linalg.norm(white, axis=1).mean()


@pytest.mark.parametrize("name", ["shared", "class", "gmm"])
def test_smaller_quantiles_give_lower_likelihood(name):
    X, y = _data()
    model = make_generative(name, random_state=0).fit(X, y)
    reference = model.sample(100_000, "b", random_state=9)[1]
    means = []
    for q in (0.5, 0.1, 0.01):
        _, ll = model.sample_tail(40, "b", q, random_state=4)
        means.append(ll.mean())
        # every tail sample lies (up to sampling noise) below the q-quantile of the class's likelihood
        assert ll.max() <= np.quantile(reference, min(1.0, q * 1.5))
    assert means[0] > means[1] > means[2]


@pytest.mark.parametrize("name", ["shared", "class", "gmm"])
def test_radius_sampling_is_at_that_mahalanobis_distance(name):
    X, y = _data()
    model = make_generative(name, n_components=1, random_state=0).fit(X, y)
    x, _ = model.sample_at_radius(30, "a", 2.5, random_state=0)
    np.testing.assert_allclose(model.mahalanobis(x, "a"), 2.5, rtol=1e-6)


def test_sampling_is_deterministic_with_a_seed():
    X, y = _data()
    model = ClassGaussian().fit(X, y)
    a = model.sample_tail(10, "a", 0.01, random_state=3)[0]
    b = model.sample_tail(10, "a", 0.01, random_state=3)[0]
    c = model.sample_tail(10, "a", 0.01, random_state=4)[0]
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_synthesizer_selects_per_class():
    X, y = _data()
    synth = VirtualOutlierSynthesizer(sample_from=1000, select=3, random_state=0).fit(X, y)
    x, labels, ll = synth.sample()
    assert x.shape == (6, D) and list(labels) == ["a"] * 3 + ["b"] * 3
    typical = synth.model_.sample(1000, "a", random_state=1)[1]
    assert ll[:3].max() < np.median(typical)


def test_bad_inputs_are_user_errors():
    X, y = _data()
    with pytest.raises(NeuronmapError, match="unknown generative model 'magic'"):
        make_generative("magic")
    model = SharedGaussian().fit(X, y)
    with pytest.raises(NeuronmapError, match="no class 'c'"):
        model.sample(3, "c")
    with pytest.raises(NeuronmapError, match="quantile must be in"):
        model.sample_tail(3, "a", 0.0)
    with pytest.raises(NeuronmapError, match="select <= sample-from"):
        model.sample_lowest(5, 2, "a")
    with pytest.raises(NeuronmapError, match="NaN"):
        SharedGaussian().fit(np.full((3, 2), np.nan), np.array([0, 0, 1]))
    with pytest.raises(NeuronmapError, match="covariance needs 2"):
        ClassGaussian().fit(np.zeros((3, 2)), np.array([0, 0, 1]))
