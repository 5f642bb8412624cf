"""OOD metrics (scikit-learn's) against brute-force loops, and the closed-form boundary crossing against a
brute-force scan."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from neuronmap.errors import NeuronmapError
from neuronmap.outliers.metrics import (
    auroc,
    detection_metrics,
    energy_score,
    fpr_at_tpr,
    mean_std,
    msp_score,
    true_class_margin,
)
from neuronmap.outliers.synthesis import boundary_crossings, nearest_indices


def _pairs_auroc(id_scores, ood_scores):
    """P(id > ood) + P(tie) / 2 over every pair, by a loop."""
    wins = sum((a > b) + 0.5 * (a == b) for a in id_scores for b in ood_scores)
    return wins / (len(id_scores) * len(ood_scores))


def _scan_fpr(id_scores, ood_scores, tpr):
    """The FPR at the largest threshold (over every score seen) that keeps at least ``tpr`` of the id scores."""
    ok = [t for t in set(id_scores) | set(ood_scores) if np.mean(np.asarray(id_scores) >= t) >= tpr - 1e-12]
    return float(np.mean(np.asarray(ood_scores) >= max(ok)))


@pytest.mark.parametrize("seed", range(6))
def test_auroc_and_fpr95_match_loops(seed):
    rng = np.random.default_rng(seed)
    n_id, n_ood = rng.integers(5, 120, size=2)
    id_scores = rng.normal(1.0, 1.0, n_id)
    ood_scores = rng.normal(0.0, 1.5, n_ood)
    if seed % 2:  # ties within and across the two sets
        id_scores, ood_scores = np.round(id_scores, 1), np.round(ood_scores, 1)
    assert auroc(id_scores, ood_scores) == pytest.approx(_pairs_auroc(id_scores, ood_scores), abs=1e-12)
    for tpr in (0.95, 0.8, 0.5, 1.0, 1 / n_id):
        assert fpr_at_tpr(id_scores, ood_scores, tpr) == _scan_fpr(id_scores, ood_scores, tpr)


def test_metrics_by_hand():
    # id: 3 2 1, ood: 2 0 -> pairs (3>2,3>0,2=2,2>0,1<2,1>0): (1+1+.5+1+0+1)/6
    assert auroc([3, 2, 1], [2, 0]) == pytest.approx(4.5 / 6)
    # tpr 2/3 keeps threshold 2: ood >= 2 is one of two
    assert fpr_at_tpr([3, 2, 1], [2, 0], 2 / 3) == 0.5
    # tpr 1 keeps threshold 1 (the lowest id score): still only the ood 2 passes
    assert fpr_at_tpr([3, 2, 1], [2, 0], 1.0) == 0.5
    with pytest.raises(NeuronmapError, match="at least one"):
        auroc([], [1.0])


def test_scores_and_margins():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 3.0, 1.0]])
    np.testing.assert_allclose(energy_score(logits), np.log(np.exp(logits).sum(1)))
    np.testing.assert_allclose(msp_score(logits), softmax(logits, axis=1).max(1))
    np.testing.assert_allclose(true_class_margin(logits, np.array([0, 2])), [2.0, -2.0])
    m = detection_metrics(logits[:1], logits[1:])
    assert set(m) == {"energy", "msp"} and set(m["energy"]) == {"auroc", "fpr95"}
    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 3}


def test_boundary_crossing_matches_a_scan():
    rng = np.random.default_rng(0)
    W, b = rng.normal(size=(4, 6)), rng.normal(size=4)
    centre = rng.normal(size=6)
    k = int(np.argmax(W @ centre + b))
    directions = rng.normal(size=(20, 6))
    t = boundary_crossings(W, b, centre, directions, k)
    grid = np.linspace(0, 20, 100_001)
    for ti, v in zip(t, directions, strict=True):
        logits = (centre + grid[:, None] * v) @ W.T + b
        lost = np.flatnonzero(logits.argmax(1) != k)
        if np.isnan(ti) or ti > 20:
            assert len(lost) == 0
        else:
            assert ti == pytest.approx(grid[lost[0]], abs=4e-4)
            at = (centre + ti * v) @ W.T + b
            assert np.sort(at)[-1] == pytest.approx(np.sort(at)[-2]) and at[k] == pytest.approx(at.max())


def test_nearest_indices_brute_force():
    rng = np.random.default_rng(1)
    pool, queries = rng.normal(size=(300, 5)), rng.normal(size=(20, 5))
    idx, dist = nearest_indices(queries, pool, 4)
    full = np.linalg.norm(queries[:, None] - pool[None], axis=2)
    np.testing.assert_array_equal(idx, np.argsort(full, axis=1)[:, :4])
    np.testing.assert_allclose(dist, np.sort(full, axis=1)[:, :4], rtol=1e-9)
    idx_all, _ = nearest_indices(queries, pool[:3], 10)
    assert idx_all.shape == (20, 3)
