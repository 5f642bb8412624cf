"""``neuronmap outliers refine``: does labelling texts near synthesised boundary points sharpen the classifier?

A simulated labelling loop. The training split is cut into a small labelled set (``initial`` texts, every
class present) and an unlabelled pool whose labels stand in for a person. Each round, every strategy picks
``budget`` pool texts, "labels" them, and the head is retrained from scratch (same seed) on the grown set:

- ``boundary``: synthesise points on the decision boundary of each class (rays from the class mean through
  samples of its generative model, cut where the class ties with its runner-up), then take the nearest
  unpicked pool text of each point, classes in turn. "Nearest" is measured in ``space``: ``feature``
  (Euclidean in the penultimate space), ``logit`` (Euclidean between the logits, the points' and the texts'
  features passed through the final layer) or ``whitened`` (Mahalanobis: Euclidean after whitening the
  penultimate space by the within-class covariance pooled over the labelled set's classes, the shared
  Gaussian's, plus ``reg_covar`` on its diagonal, whatever ``generative`` is);
- ``random``: pool texts drawn uniformly;
- ``uncertainty``: the least-confident pool texts (lowest maximum softmax probability).

Scored on the whole test split and on its hardest part: the ``hard_fraction`` of test texts with the lowest
true-class margin under the initial model (fixed per seed, so every strategy is scored on the same texts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax

from neuronmap.errors import NeuronmapError
from neuronmap.outliers.classifier import Classifier
from neuronmap.outliers.generative import make_generative
from neuronmap.outliers.metrics import accuracy, mean_std, true_class_margin
from neuronmap.outliers.synthesis import boundary_points, nearest_indices
from neuronmap.outliers.train import DataConfig, Prepared, prepare
from neuronmap.outliers.vos import TrainConfig, fit_head, single_threaded
from neuronmap.progress import progress_bar

STRATEGIES = ("boundary", "random", "uncertainty")
SPACES = ("feature", "logit", "whitened")


@dataclass
class RefineConfig:
    initial: int = 300
    budget: int = 100
    rounds: int = 1
    hard_fraction: float = 0.2
    strategies: tuple[str, ...] = STRATEGIES
    generative: str = "shared"
    components: int = 3
    reg_covar: float = 1e-4
    space: str = "feature"

    def check(self) -> None:
        if self.initial < 2 or self.budget < 1 or self.rounds < 1:
            raise NeuronmapError("--initial must be >= 2, --budget and --rounds >= 1")
        if not 0 < self.hard_fraction <= 1:
            raise NeuronmapError(f"--hard-fraction must be in (0, 1], got {self.hard_fraction}")
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or not self.strategies:
            raise NeuronmapError(
                f"unknown strategy {unknown[0] if unknown else ''!r} (choose from {STRATEGIES})"
            )
        if self.space not in SPACES:
            raise NeuronmapError(f"--space must be one of {', '.join(SPACES)}, got {self.space!r}")


def initial_labelled(y: np.ndarray, index: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` of ``index`` with at least two of every class (then uniformly), so every class can be modelled."""
    classes = np.unique(y[index])
    if n < 2 * len(classes):
        raise NeuronmapError(f"--initial {n} is too small: at least 2 per class ({2 * len(classes)}) needed")
    if n >= len(index):
        raise NeuronmapError(f"--initial {n} leaves no pool: the training split has {len(index)} texts")
    chosen = [rng.choice(index[y[index] == c], size=2, replace=False) for c in classes]
    chosen_set = np.concatenate(chosen)
    rest = np.setdiff1d(index, chosen_set)
    extra = rng.choice(rest, size=n - len(chosen_set), replace=False)
    return np.sort(np.concatenate([chosen_set, extra]))


def pick(
    strategy: str,
    classifier: Classifier,
    prepared: Prepared,
    labelled: np.ndarray,
    pool: np.ndarray,
    budget: int,
    config: RefineConfig,
    rng: np.random.Generator,
) -> np.ndarray:
    """Indices (into the data) of ``budget`` pool texts chosen by ``strategy``."""
    budget = min(budget, len(pool))
    if strategy == "random":
        return rng.choice(pool, size=budget, replace=False)
    if strategy == "uncertainty":
        confidence = softmax(classifier.logits(prepared.X[pool]).astype(np.float64), axis=1).max(1)
        return pool[np.argsort(confidence, kind="stable")[:budget]]
    feats = classifier.features(prepared.X[labelled])
    labels = np.asarray(classifier.classes, dtype=object)[prepared.y[labelled]]
    gen = make_generative(
        config.generative, reg_covar=config.reg_covar, n_components=config.components, random_state=0
    ).fit(feats, labels)
    per_class = -(-budget // len(classifier.classes))
    rows = []
    for label in classifier.classes:
        centre = feats[labels == label].mean(0)
        rows.append(boundary_points(classifier, gen, label, centre, per_class, rng))
    # Interleave the classes' points so that a budget not divisible by the classes stays balanced.
    order = [r[i] for i in range(per_class) for r in rows if i < len(r)]
    if not order:
        return rng.choice(pool, size=budget, replace=False)  # no class mean is predicted as its class
    points = np.stack(order)
    pool_feats = classifier.features(prepared.X[pool])
    queries, keys = to_space(config.space, classifier, points, pool_feats, feats, labels, config.reg_covar)
    neighbours = min(len(pool), budget + 1)
    idx, _ = nearest_indices(queries, keys, neighbours)
    taken: list[int] = []
    seen: set[int] = set()
    for row in idx:
        for j in row:
            if j not in seen:
                seen.add(int(j))
                taken.append(int(j))
                break
        if len(taken) == budget:
            break
    if len(taken) < budget:  # too few boundary points crossed: fill with the nearest to any of them
        for j in idx.T.ravel():
            if int(j) not in seen:
                seen.add(int(j))
                taken.append(int(j))
            if len(taken) == budget:
                break
    return pool[np.asarray(taken, dtype=np.int64)]


def to_space(
    space: str,
    classifier: Classifier,
    points: np.ndarray,
    pool_feats: np.ndarray,
    labelled_feats: np.ndarray,
    labelled_labels: np.ndarray,
    reg_covar: float = 1e-4,
) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate ``points`` and ``pool_feats`` mapped (float64) to where Euclidean distance is ``space``'s.

    ``feature``: unchanged. ``logit``: through the final layer. ``whitened``: ``L^-1 x``, with ``L L^T`` the
    covariance pooled over the labelled features' classes plus ``reg_covar`` on the diagonal, so that
    ``|L^-1 (p - x)|`` is the Mahalanobis distance between a point and a text under that covariance.
    """
    points, pool_feats = np.asarray(points, dtype=np.float64), np.asarray(pool_feats, dtype=np.float64)
    if space == "feature":
        return points, pool_feats
    if space == "logit":  # the final layer in float64 (the points are float64 boundary solutions)
        weight = classifier.head.final.weight.detach().double().numpy()
        bias = classifier.head.final.bias.detach().double().numpy()
        return points @ weight.T + bias, pool_feats @ weight.T + bias
    if space == "whitened":
        from scipy.linalg import solve_triangular

        from neuronmap.outliers.generative import SharedGaussian

        chol = SharedGaussian(reg_covar=reg_covar).fit(labelled_feats, labelled_labels).cholesky_[0]
        return (
            solve_triangular(chol, points.T, lower=True).T,
            solve_triangular(chol, pool_feats.T, lower=True).T,
        )
    raise NeuronmapError(f"--space must be one of {', '.join(SPACES)}, got {space!r}")


def refine(
    data_config: DataConfig,
    train_config: TrainConfig,
    config: RefineConfig,
    seeds: list[int],
    out: str | Path | None = None,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the loop for every seed and strategy; return (and write to ``out/refine.json``) the accuracies."""
    from neuronmap.rundir import atomic_write_json, atomic_write_text

    config.check()
    train_config.check()
    if not seeds or len(set(seeds)) != len(seeds):
        raise NeuronmapError(f"--seeds needs distinct seeds, got {seeds}")
    start = time.perf_counter()
    prepared = prepare(data_config, progress=progress)
    with single_threaded():  # the head and the densities are small: threads would only wait for each other
        runs, picked_rows = _loop(prepared, data_config, train_config, config, seeds, progress)
    result = {
        "data": data_config.to_dict(),
        "train": train_config.to_dict(),
        "refine": {**asdict(config), "strategies": list(config.strategies)},
        "seeds": list(seeds),
        "sizes": {"train": len(prepared.part("train")), "test": len(prepared.part("test"))},
        "runs": runs,
        "aggregate": _aggregate(runs, config),
        "seconds": round(time.perf_counter() - start, 1),
    }
    if out is not None:
        import json

        out = Path(out)
        atomic_write_json(result, out / "refine.json")
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in picked_rows)
        atomic_write_text(lines, out / "picked.jsonl")
    return result


def _loop(
    prepared: Prepared,
    data_config: DataConfig,
    train_config: TrainConfig,
    config: RefineConfig,
    seeds: list[int],
    progress: bool = False,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    fits = len(seeds) * (1 + len(config.strategies) * config.rounds)
    with progress_bar("refining", total=fits, unit="fits", enabled=progress) as bar:
        return _loop_seeds(prepared, data_config, train_config, config, seeds, bar.advance)


def _loop_seeds(
    prepared: Prepared,
    data_config: DataConfig,
    train_config: TrainConfig,
    config: RefineConfig,
    seeds: list[int],
    advance: Callable[[], None],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    train_index, test = prepared.part("train"), prepared.part("test")
    runs: dict[str, Any] = {}
    picked_rows: list[dict[str, Any]] = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        tc = replace(train_config, seed=seed)
        labelled0 = initial_labelled(prepared.y, train_index, config.initial, rng)
        first = _fit(prepared, labelled0, tc, data_config)
        advance()
        test_logits = first.logits(prepared.X[test])
        margins = true_class_margin(test_logits, prepared.y[test])
        n_hard = max(1, round(config.hard_fraction * len(test)))
        hard = test[np.argsort(margins, kind="stable")[:n_hard]]
        base = _scores(first, prepared, test, hard)
        seed_runs: dict[str, Any] = {"initial": base, "hard_size": n_hard}
        for strategy in config.strategies:
            labelled, classifier = labelled0, first
            rounds = []
            srng = np.random.default_rng([seed, STRATEGIES.index(strategy)])
            for r in range(config.rounds):
                pool = np.setdiff1d(train_index, labelled)
                chosen = pick(strategy, classifier, prepared, labelled, pool, config.budget, config, srng)
                if seed == seeds[0]:
                    picked_rows += [
                        {"seed": seed, "strategy": strategy, "round": r, "text": prepared.data.texts[i],
                         "label": prepared.data.labels[i]}
                        for i in chosen
                    ]  # fmt: skip
                labelled = np.sort(np.concatenate([labelled, chosen]))
                classifier = _fit(prepared, labelled, tc, data_config)
                advance()
                rounds.append({"labelled": len(labelled), **_scores(classifier, prepared, test, hard)})
            seed_runs[strategy] = rounds
        runs[str(seed)] = seed_runs
    return runs, picked_rows


def _fit(prepared: Prepared, index: np.ndarray, config: TrainConfig, data_config: DataConfig) -> Classifier:
    head, _ = fit_head(prepared.X[index], prepared.y[index], len(prepared.classes), config)
    return Classifier(
        head, prepared.classes, data_config.encoder, prepared.weights_hash, data_config.max_length
    )


def _scores(
    classifier: Classifier, prepared: Prepared, test: np.ndarray, hard: np.ndarray
) -> dict[str, float]:
    return {
        "accuracy": accuracy(classifier.logits(prepared.X[test]), prepared.y[test]),
        "hard_accuracy": accuracy(classifier.logits(prepared.X[hard]), prepared.y[hard]),
    }


def _aggregate(runs: dict[str, Any], config: RefineConfig) -> dict[str, Any]:
    seeds = list(runs.values())
    agg: dict[str, Any] = {
        "initial": {m: mean_std([s["initial"][m] for s in seeds]) for m in ("accuracy", "hard_accuracy")}
    }
    for strategy in config.strategies:
        agg[strategy] = [
            {m: mean_std([s[strategy][r][m] for s in seeds]) for m in ("accuracy", "hard_accuracy")}
            for r in range(config.rounds)
        ]
    return agg
