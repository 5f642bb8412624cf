"""Out-of-distribution scores and detection metrics (AUROC and FPR at a TPR from ``sklearn.metrics``; tests compare
them with brute-force loops over pairs and thresholds).

Scores are "higher = more in-distribution": the negative energy ``logsumexp(logits)`` and the maximum softmax
probability (Hendrycks and Gimpel 2017). In-distribution is the positive class throughout.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp, softmax
from sklearn.metrics import roc_auc_score, roc_curve

from neuronmap.errors import NeuronmapError


def energy_score(logits: np.ndarray) -> np.ndarray:
    """``-energy = logsumexp(logits)``: high where the classifier is confident."""
    return logsumexp(np.asarray(logits, dtype=np.float64), axis=1)


def msp_score(logits: np.ndarray) -> np.ndarray:
    """Maximum softmax probability."""
    return softmax(np.asarray(logits, dtype=np.float64), axis=1).max(1)


SCORES = {"energy": energy_score, "msp": msp_score}


def _check(id_scores: np.ndarray, ood_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(id_scores, dtype=np.float64).ravel()
    b = np.asarray(ood_scores, dtype=np.float64).ravel()
    if len(a) == 0 or len(b) == 0:
        raise NeuronmapError("OOD metrics need at least one in-distribution and one OOD score")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise NeuronmapError("OOD scores contain NaN or infinite values")
    return a, b


def _labelled(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """In-distribution is the positive class."""
    return np.r_[np.ones(len(a)), np.zeros(len(b))], np.r_[a, b]


def auroc(id_scores: np.ndarray, ood_scores: np.ndarray) -> float:
    """Area under the ROC curve = P(id score > ood score) + 0.5 P(tie) (the Mann-Whitney statistic)."""
    return float(roc_auc_score(*_labelled(*_check(id_scores, ood_scores))))


def fpr_at_tpr(id_scores: np.ndarray, ood_scores: np.ndarray, tpr: float = 0.95) -> float:
    """False-positive rate at the highest threshold that keeps at least ``tpr`` of in-distribution inputs.

    With the rule "in-distribution if score >= t", ``t`` is the largest score value with
    ``mean(id >= t) >= tpr``; the result is ``mean(ood >= t)`` (FPR95 for ``tpr = 0.95``).
    """
    a, b = _check(id_scores, ood_scores)
    if not 0 < tpr <= 1:
        raise NeuronmapError(f"tpr must be in (0, 1], got {tpr}")
    # thresholds fall, so the first point reaching ``tpr`` is the highest threshold that does
    fprs, tprs, _ = roc_curve(*_labelled(a, b), drop_intermediate=False)
    return float(fprs[np.searchsorted(tprs, tpr - 1e-12, side="left")])


def detection_metrics(id_logits: np.ndarray, ood_logits: np.ndarray) -> dict[str, dict[str, float]]:
    """``{score: {"auroc", "fpr95"}}`` for the energy and MSP scores."""
    out = {}
    for name, fn in SCORES.items():
        a, b = fn(id_logits), fn(ood_logits)
        out[name] = {"auroc": auroc(a, b), "fpr95": fpr_at_tpr(a, b, 0.95)}
    return out


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((np.asarray(logits).argmax(1) == np.asarray(y)).mean()) if len(y) else float("nan")


def true_class_margin(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Logit of the true class minus the largest other logit: negative where the prediction is wrong."""
    logits = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y)
    rows = np.arange(len(y))
    true = logits[rows, y]
    other = logits.copy()
    other[rows, y] = -np.inf
    return true - other.max(1)


def mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (ddof = 1; 0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    std = float(arr.std(ddof=1)) if len(arr) > 1 else 0.0
    return {"mean": float(arr.mean()), "std": std, "n": len(arr)}
