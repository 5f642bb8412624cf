"""``neuronmap outliers synthesize``: penultimate activations of one class at controlled dissimilarity.

A generative model is fitted to the training texts' penultimate features. Points of class C are drawn

- by likelihood quantile ``q``: from the lowest-``q`` likelihood tail of the class (``q = 0.5`` is ordinary,
  ``q = 0.001`` far out at the edge), the VOS selection rule;
- by Mahalanobis radius ``r``: at exactly that distance from the class (its nearest component for a mixture);
- on the decision boundary: along rays from the class mean through model samples, at the exact point where
  class C's logit ties with the runner-up. The final layer is linear in the features, so each rival's margin
  is linear along a ray and the crossing is solved in closed form, not searched.

Each point goes through the final layer (logits, probabilities, energy), and its nearest real texts in the
penultimate space are listed: texts a person would label to sharpen the boundary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import logsumexp, softmax

from neuronmap.errors import NeuronmapError
from neuronmap.outliers.classifier import Classifier, read_split
from neuronmap.outliers.embed import embed_texts
from neuronmap.outliers.generative import make_generative
from neuronmap.outliers.vos import single_threaded

DEFAULT_QUANTILES = (0.5, 0.1, 0.01, 0.001)


def split_features(
    classifier: Classifier, folder: str | Path, *, progress: bool = True
) -> tuple[Any, np.ndarray]:
    """The classifier's split table and the penultimate features of all its texts (embeddings from cache)."""
    table = read_split(folder)
    X, _ = embed_texts(
        table["text"].tolist(),
        classifier.encoder,
        weights_hash=classifier.weights_hash,
        max_length=classifier.max_length,
        dtype=classifier.info.get("data", {}).get("dtype"),  # as the classifier was trained
        progress=progress,
    )
    return table, classifier.features(X)


def boundary_crossings(
    final_weight: np.ndarray,
    final_bias: np.ndarray,
    centre: np.ndarray,
    directions: np.ndarray,
    k: int,
) -> np.ndarray:
    """Step ``t >= 0`` along ``centre + t * direction`` where class ``k`` first stops winning (NaN if never).

    Margin against rival ``j`` is ``a_j + t b_j`` with ``a_j = (w_k - w_j) . centre + (b_k - b_j)`` and
    ``b_j = (w_k - w_j) . direction``; class ``k`` loses at the smallest ``-a_j / b_j`` over rivals with
    ``b_j < 0``. Requires the centre itself to be predicted as ``k`` (``a_j > 0``).
    """
    diff_w = final_weight[k] - final_weight  # (C, h)
    diff_b = final_bias[k] - final_bias
    a = diff_w @ centre + diff_b  # (C,)
    b = directions @ diff_w.T  # (n, C)
    a = np.delete(a, k)
    b = np.delete(b, k, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(b < 0, -a / b, np.inf)
    first = t.min(1)
    return np.where(np.isfinite(first), first, np.nan)


@dataclass
class SynthesisResult:
    table: Any  # pandas DataFrame, one row per synthetic point
    nearest: list[dict[str, Any]]
    summary: dict[str, Any]
    out: Path


def synthesize(
    model: str | Path,
    label: str,
    *,
    quantiles: list[float] | tuple[float, ...] | None = DEFAULT_QUANTILES,
    radii: list[float] | tuple[float, ...] | None = None,
    n: int = 20,
    boundary: int | None = None,
    generative: str = "shared",
    components: int = 3,
    reg_covar: float = 1e-4,
    pool: str | None = None,
    pool_text_column: str = "text",
    pool_label_column: str = "label",
    neighbours: int = 5,
    seed: int = 0,
    out: str | Path | None = None,
    figure: bool = True,
    progress: bool = True,
) -> SynthesisResult:
    """Synthesise class ``label`` at each quantile and radius (``n`` each) and ``boundary`` points (default
    ``n``), list the ``neighbours`` nearest pool texts of each, and write the table, JSONL and figure."""
    if n < 1 or neighbours < 0:
        raise NeuronmapError(f"--n must be >= 1 and --neighbours >= 0 (got {n}, {neighbours})")
    classifier = Classifier.load(model)
    k = classifier.class_index(label)
    out = Path(out) if out is not None else Path(model) / "synthesis" / _slug(label)
    table, feats = split_features(classifier, model, progress=progress)
    with single_threaded():  # small matrices: threads would only wait for each other
        return _synthesize(classifier, table, feats, label, k, out, quantiles, radii, n, boundary, generative,
                           components, reg_covar, pool, pool_text_column, pool_label_column, neighbours, seed,
                           figure, progress)  # fmt: skip


def _synthesize(
    classifier: Classifier,
    table: Any,
    feats: np.ndarray,
    label: str,
    k: int,
    out: Path,
    quantiles: Any,
    radii: Any,
    n: int,
    boundary: int | None,
    generative: str,
    components: int,
    reg_covar: float,
    pool: str | None,
    pool_text_column: str,
    pool_label_column: str,
    neighbours: int,
    seed: int,
    figure: bool,
    progress: bool,
) -> SynthesisResult:
    from neuronmap.rundir import atomic_write_json, atomic_write_parquet, atomic_write_text

    train = (table["split"] == "train").to_numpy()
    gen = make_generative(generative, reg_covar=reg_covar, n_components=components, random_state=seed)
    gen.fit(feats[train], table["label"].to_numpy()[train])
    rng = np.random.default_rng(seed)

    points, modes, levels = [], [], []
    for q in quantiles or ():
        x, _ = gen.sample_tail(n, label, float(q), rng)
        points.append(x)
        modes += ["quantile"] * len(x)
        levels += [float(q)] * len(x)
    for r in radii or ():
        x, _ = gen.sample_at_radius(n, label, float(r), rng)
        points.append(x)
        modes += ["radius"] * len(x)
        levels += [float(r)] * len(x)
    n_boundary = n if boundary is None else boundary
    notes: list[str] = []
    if n_boundary > 0:
        centre = feats[train & (table["label"] == label).to_numpy()].mean(0)
        x = boundary_points(classifier, gen, label, centre, n_boundary, rng, notes)
        points.append(x)
        modes += ["boundary"] * len(x)
        levels += [float("nan")] * len(x)
    if not points or sum(len(p) for p in points) == 0:
        raise NeuronmapError("nothing to synthesise: give --quantiles, --radii or --boundary")
    X = np.concatenate(points)
    frame = _describe(classifier, gen, label, k, X, modes, levels)

    pool_texts, pool_labels, pool_feats = _pool(classifier, table, feats, train, pool, pool_text_column,
                                                pool_label_column, progress)  # fmt: skip
    nearest = _nearest(classifier, X, frame, pool_texts, pool_labels, pool_feats, neighbours, k)

    summary = {
        "class": label,
        "generative": generative,
        "points": len(frame),
        "pool": pool or "training split",
        "pool_size": len(pool_texts),
        "levels": _level_summary(frame),
        "notes": notes,
    }
    atomic_write_parquet(frame, out / "synthetic.parquet")
    atomic_write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in nearest), out / "nearest.jsonl"
    )
    atomic_write_json(summary, out / "summary.json")
    if figure:
        from neuronmap.outliers.figures import plot_synthesis

        plot_synthesis(frame, label, out / "synthesis.png")
    return SynthesisResult(frame, nearest, summary, out)


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in label).strip("-") or "class"


def boundary_points(
    classifier: Classifier,
    gen: Any,
    label: str,
    centre: np.ndarray,
    n: int,
    rng: np.random.Generator,
    notes: list[str] | None = None,
) -> np.ndarray:
    """``n`` points where class ``label`` ties with its runner-up, on rays from ``centre`` through samples of
    the class's generative model (so the directions follow the class's own spread)."""
    notes = [] if notes is None else notes
    k = classifier.class_index(label)
    weight = classifier.head.final.weight.detach().double().numpy()
    bias = classifier.head.final.bias.detach().double().numpy()
    if int(np.argmax(weight @ centre + bias)) != k:
        notes.append(f"the mean of class {label!r} is not predicted as {label!r}: no boundary points")
        return np.zeros((0, len(centre)))
    found: list[np.ndarray] = []
    for _ in range(20):  # rays that never leave the class (possible in a ReLU cone) are redrawn
        x, _ = gen.sample(max(n, 16), label, rng)
        directions = x - centre
        t = boundary_crossings(weight, bias, centre, directions, k)
        ok = np.isfinite(t)
        found.append(centre + t[ok, None] * directions[ok])
        if sum(len(f) for f in found) >= n:
            break
    points = np.concatenate(found)[:n]
    if len(points) < n:
        notes.append(f"only {len(points)} of {n} rays from the class mean crossed the decision boundary")
    return points


def _describe(
    classifier: Classifier, gen: Any, label: str, k: int, X: np.ndarray, modes: list[str], levels: list[float]
) -> Any:
    import pandas as pd

    logits = classifier.logits_from_features(X).astype(np.float64)
    probs = softmax(logits, axis=1)
    frame = pd.DataFrame(
        {
            "sample_id": np.arange(len(X)),
            "mode": modes,
            "level": levels,
            "log_likelihood": gen.log_likelihood(X, label),
            "mahalanobis": gen.mahalanobis(X, label),
            "energy": -logsumexp(logits, axis=1),
            "p_class": probs[:, k],
            "predicted": [classifier.classes[i] for i in probs.argmax(1)],
            "margin": logits[:, k] - np.delete(logits, k, axis=1).max(1),
        }
    )
    for i, name in enumerate(classifier.classes):
        frame[f"logit:{name}"] = logits[:, i]
    for i, name in enumerate(classifier.classes):
        frame[f"p:{name}"] = probs[:, i]
    return frame


def _pool(
    classifier: Classifier,
    table: Any,
    feats: np.ndarray,
    train: np.ndarray,
    pool: str | None,
    text_column: str,
    label_column: str,
    progress: bool,
) -> tuple[list[str], list[str | None], np.ndarray]:
    if pool is None:
        return table["text"][train].tolist(), table["label"][train].tolist(), feats[train]
    from neuronmap.outliers.data import load_labelled

    data = load_labelled(pool, text_column=text_column, label_column=label_column, require_labels=False)
    X, _ = embed_texts(
        data.texts,
        classifier.encoder,
        weights_hash=classifier.weights_hash,
        max_length=classifier.max_length,
        dtype=classifier.info.get("data", {}).get("dtype"),  # as the classifier was trained
        progress=progress,
    )
    return data.texts, data.labels, classifier.features(X)


def nearest_indices(queries: np.ndarray, pool: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and Euclidean distances of the ``k`` nearest pool rows of each query (exact, chunked)."""
    k = min(k, len(pool))
    pool_sq = (pool**2).sum(1)
    idx = np.zeros((len(queries), k), dtype=np.int64)
    dist = np.zeros((len(queries), k))
    for start in range(0, len(queries), 256):
        q = queries[start : start + 256]
        d2 = np.maximum((q**2).sum(1)[:, None] - 2 * q @ pool.T + pool_sq[None, :], 0.0)
        part = (
            np.argpartition(d2, k - 1, axis=1)[:, :k]
            if k < len(pool)
            else np.tile(np.arange(len(pool)), (len(q), 1))
        )
        order = np.take_along_axis(d2, part, 1).argsort(1, kind="stable")
        idx[start : start + len(q)] = np.take_along_axis(part, order, 1)
        dist[start : start + len(q)] = np.sqrt(np.take_along_axis(d2, idx[start : start + len(q)], 1))
    return idx, dist


def _nearest(
    classifier: Classifier,
    X: np.ndarray,
    frame: Any,
    texts: list[str],
    labels: list[str | None],
    pool_feats: np.ndarray,
    neighbours: int,
    k: int,
) -> list[dict[str, Any]]:
    pool_probs = softmax(classifier.logits_from_features(pool_feats).astype(np.float64), axis=1)
    idx, dist = (
        nearest_indices(X.astype(np.float64), pool_feats.astype(np.float64), neighbours)
        if neighbours and len(texts)
        else (np.zeros((len(X), 0), dtype=np.int64), np.zeros((len(X), 0)))
    )
    records = []
    for row, (ids, ds) in zip(frame.itertuples(index=False), zip(idx, dist, strict=True), strict=True):
        records.append(
            {
                "sample_id": int(row.sample_id),
                "mode": row.mode,
                "level": None if np.isnan(row.level) else float(row.level),
                "mahalanobis": float(row.mahalanobis),
                "log_likelihood": float(row.log_likelihood),
                "p_class": float(row.p_class),
                "predicted": row.predicted,
                "energy": float(row.energy),
                "neighbours": [
                    {
                        "rank": rank,
                        "text": texts[i],
                        "label": labels[i],
                        "distance": float(d),
                        "predicted": classifier.classes[int(pool_probs[i].argmax())],
                        "p_class": float(pool_probs[i, k]),
                    }
                    for rank, (i, d) in enumerate(zip(ids, ds, strict=True), start=1)
                ],
            }
        )
    return records


def _level_summary(frame: Any) -> list[dict[str, Any]]:
    rows = []
    for (mode, level), group in frame.groupby(["mode", "level"], dropna=False, sort=False):
        rows.append(
            {
                "mode": mode,
                "level": None if isinstance(level, float) and np.isnan(level) else float(level),
                "points": len(group),
                "mahalanobis": float(group["mahalanobis"].mean()),
                "log_likelihood": float(group["log_likelihood"].mean()),
                "p_class": float(group["p_class"].mean()),
                "energy": float(group["energy"].mean()),
                "still_class": float((group["margin"] > 0).mean()),
            }
        )
    return rows
