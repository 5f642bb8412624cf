"""Where refine's ``boundary`` strategy measures "nearest" (``--space``), against brute-force references."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from neuronmap.errors import NeuronmapError
from neuronmap.outliers import refinement
from neuronmap.outliers.classifier import Classifier, MLPHead
from neuronmap.outliers.refinement import SPACES, RefineConfig, pick, to_space
from neuronmap.outliers.synthesis import nearest_indices

CLASSES = ["a", "b", "c"]


def _classifier(d_in: int = 6, hidden: int = 5, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    head = MLPHead(d_in, hidden, len(CLASSES), dropout=0.0).eval()
    return Classifier(head, CLASSES, "test-encoder", "hash", 16)


def _pooled_covariance(feats: np.ndarray, labels: np.ndarray, reg: float) -> np.ndarray:
    """Within-class scatter summed over classes, divided by all rows, plus ``reg`` on the diagonal (by loops)."""
    d = feats.shape[1]
    scatter = np.zeros((d, d))
    for c in np.unique(labels):
        rows = feats[labels == c]
        mean = rows.mean(0)
        for row in rows:
            scatter += np.outer(row - mean, row - mean)
    return scatter / len(feats) + reg * np.eye(d)


def _brute_distances(
    space: str, classifier: Classifier, points: np.ndarray, pool: np.ndarray, feats, labels, reg
) -> np.ndarray:
    """Every point-to-text distance, one pair at a time, straight from each space's definition."""
    weight = classifier.head.final.weight.detach().double().numpy()
    bias = classifier.head.final.bias.detach().double().numpy()
    inverse = np.linalg.inv(_pooled_covariance(feats, labels, reg))
    out = np.zeros((len(points), len(pool)))
    for i, p in enumerate(points):
        for j, x in enumerate(pool):
            if space == "feature":
                out[i, j] = np.sqrt(((p - x) ** 2).sum())
            elif space == "logit":
                out[i, j] = np.sqrt((((weight @ p + bias) - (weight @ x + bias)) ** 2).sum())
            else:
                out[i, j] = np.sqrt((p - x) @ inverse @ (p - x))
    return out


@pytest.fixture
def geometry():
    rng = np.random.default_rng(0)
    # anisotropic features (scales 0.1 to 10), so that the three spaces rank neighbours differently
    scales = np.array([10.0, 3.0, 1.0, 0.3, 0.1])
    labels = np.repeat(np.array(CLASSES, dtype=object), 20)
    centres = rng.normal(size=(3, 5)) * scales
    feats = centres[np.repeat(np.arange(3), 20)] + rng.normal(size=(60, 5)) * scales
    points = rng.normal(size=(12, 5)) * scales
    pool = rng.normal(size=(80, 5)) * scales
    return _classifier(), points, pool, feats, labels


@pytest.mark.parametrize("space", SPACES)
def test_nearest_in_each_space_matches_brute_force(space, geometry):
    classifier, points, pool, feats, labels = geometry
    queries, keys = to_space(space, classifier, points, pool, feats, labels, reg_covar=1e-3)
    idx, dist = nearest_indices(queries, keys, 7)
    brute = _brute_distances(space, classifier, points, pool, feats, labels, 1e-3)
    np.testing.assert_array_equal(idx, np.argsort(brute, axis=1, kind="stable")[:, :7])
    np.testing.assert_allclose(dist, np.sort(brute, axis=1)[:, :7], rtol=1e-7, atol=1e-9)


def test_the_spaces_rank_differently(geometry):
    classifier, points, pool, feats, labels = geometry
    nearest = {}
    for space in SPACES:
        queries, keys = to_space(space, classifier, points, pool, feats, labels)
        nearest[space] = nearest_indices(queries, keys, 1)[0][:, 0]
    assert not np.array_equal(nearest["feature"], nearest["logit"])
    assert not np.array_equal(nearest["feature"], nearest["whitened"])


def test_feature_space_is_the_plain_penultimate_space(geometry):
    classifier, points, pool, feats, labels = geometry
    queries, keys = to_space("feature", classifier, points.astype(np.float32), pool, feats, labels)
    assert queries.dtype == keys.dtype == np.float64
    np.testing.assert_array_equal(queries, points.astype(np.float32).astype(np.float64))
    np.testing.assert_array_equal(keys, pool)


@pytest.mark.parametrize("space", SPACES)
def test_boundary_pick_takes_the_nearest_unpicked_text_in_its_space(space, monkeypatch):
    """``pick`` against a brute-force greedy pass: each boundary point, classes interleaved, takes the nearest
    pool text (by the space's distance) that no earlier point took."""
    rng = np.random.default_rng(1)
    classifier = _classifier(d_in=6, hidden=5, seed=1)
    X = rng.normal(size=(90, 6)).astype(np.float32)
    y = np.tile(np.arange(3), 30)
    labelled, pool = np.arange(30), np.arange(30, 90)
    per_class = {label: rng.normal(size=(3, 5)) for label in CLASSES}  # stand-ins for boundary points

    def fake_boundary_points(clf, gen, label, centre, n, rng):
        return per_class[label][:n]

    monkeypatch.setattr(refinement, "boundary_points", fake_boundary_points)
    prepared = SimpleNamespace(X=X, y=y)
    config = RefineConfig(space=space, reg_covar=1e-3)
    chosen = pick("boundary", classifier, prepared, labelled, pool, 8, config, np.random.default_rng(0))

    points = np.stack([per_class[label][i] for i in range(3) for label in CLASSES])[:8]
    feats = classifier.features(X[labelled]).astype(np.float64)
    labels = np.asarray(CLASSES, dtype=object)[y[labelled]]
    pool_feats = classifier.features(X[pool]).astype(np.float64)
    brute = _brute_distances(space, classifier, points, pool_feats, feats, labels, 1e-3)
    taken: list[int] = []
    for row in brute:
        taken.append(next(int(j) for j in np.argsort(row, kind="stable") if int(j) not in taken))
    np.testing.assert_array_equal(chosen, pool[taken])


def test_unknown_space_is_a_user_error():
    with pytest.raises(NeuronmapError, match="--space"):
        RefineConfig(space="cosine").check()


@pytest.mark.parametrize(
    ("command", "option", "message"),
    [
        ("refine", ["--space", "cosine"], "--space"),
        ("evaluate", ["--logistic-sign", "negative"], "--logistic-sign"),
    ],
)
def test_the_cli_passes_the_new_options_on(command, option, message, tmp_path):
    """The options reach the configs (which refuse a bad value before any data is read)."""
    from typer.testing import CliRunner

    from neuronmap.cli import app

    args = [
        "outliers",
        command,
        "--data",
        str(tmp_path / "absent.csv"),
        "--out",
        str(tmp_path / "o"),
        *option,
    ]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, NeuronmapError) and message in str(result.exception)
