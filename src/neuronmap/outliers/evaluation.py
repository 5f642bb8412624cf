"""``neuronmap outliers evaluate``: the same classifier with and without VOS, over several seeds.

For each seed both variants train from the same initialisation and batch order (the seed), on the same split
(``data_seed``), so the only difference is the VOS loss. Reported per seed and as mean and sample std:
in-distribution test accuracy, and for each OOD set (``near``: texts of the held-out labels; ``far``: another
corpus) and each score (``energy``, ``msp``) the AUROC and the FPR at 95% TPR, the test split being the
in-distribution side.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from neuronmap.errors import NeuronmapError
from neuronmap.outliers.data import PREFIX, load_labelled
from neuronmap.outliers.embed import embed_texts
from neuronmap.outliers.metrics import mean_std
from neuronmap.outliers.train import DataConfig, evaluate_split, fit_classifier, prepare
from neuronmap.outliers.vos import TrainConfig
from neuronmap.progress import progress_bar

VARIANTS = ("baseline", "vos")
# The far-OOD corpus for each built-in set when --far is "auto": the other built-in set.
AUTO_FAR = {f"{PREFIX}wiki-topics": f"{PREFIX}sentiment", f"{PREFIX}sentiment": f"{PREFIX}wiki-topics"}


def resolve_far(far: str | None, data: str) -> str | None:
    if far == "auto":
        return AUTO_FAR.get(data)
    return None if far in (None, "", "none") else far


def evaluate(
    data_config: DataConfig,
    train_config: TrainConfig,
    seeds: list[int],
    out: str | Path | None = None,
    *,
    far: str | None = "auto",
    far_limit: int | None = 1000,
    far_text_column: str = "text",
    progress: bool = True,
) -> dict[str, Any]:
    """Train both variants for every seed and return (and write to ``out/metrics.json``) the metrics."""
    from neuronmap.rundir import atomic_write_json, atomic_write_text

    if not seeds:
        raise NeuronmapError("--seeds needs at least one seed")
    if len(set(seeds)) != len(seeds):
        raise NeuronmapError(f"--seeds has repeats: {seeds}")
    train_config.check()
    start = time.perf_counter()
    prepared = prepare(data_config, progress=progress)
    far_src = resolve_far(far, data_config.data)
    far_X = None
    if far_src is not None:
        far_data = load_labelled(
            far_src,
            text_column=far_text_column,
            limit=far_limit,
            seed=data_config.data_seed,
            require_labels=False,
        )
        far_X, _ = embed_texts(
            far_data.texts,
            data_config.encoder,
            weights_hash=prepared.weights_hash,
            max_length=data_config.max_length,
            batch_size=data_config.embed_batch_size,
            device=data_config.device,
            dtype=data_config.dtype,
            progress=progress,
        )
    runs: dict[str, dict[str, Any]] = {v: {} for v in VARIANTS}
    fits = [(seed, variant) for seed in seeds for variant in VARIANTS]
    with progress_bar("training", total=len(fits), unit="classifiers", enabled=progress) as bar:
        for seed, variant in fits:
            config = replace(train_config, seed=seed, vos=variant == "vos")
            classifier = fit_classifier(prepared, config, data_config, progress=False)
            m = evaluate_split(classifier, prepared, far_X)
            runs[variant][str(seed)] = {
                "accuracy": m["test_accuracy"],
                "val_accuracy": m["val_accuracy"],
                "ood": m["ood"],
            }
            if config.vos:  # the uncertainty logistic's weight as the loss used it: its sign is the rule
                raw = classifier.head.ood.weight.detach().double()
                w = torch.nn.functional.softplus(raw) if config.logistic_sign == "positive" else raw
                runs[variant][str(seed)]["logistic_weight"] = float(w.item())
            bar.advance()
    result = {
        "data": data_config.to_dict(),
        "train": {k: v for k, v in train_config.to_dict().items() if k not in ("seed", "vos")},
        "far": far_src,
        "far_limit": far_limit,
        "seeds": list(seeds),
        "sizes": {
            **{name: int((prepared.split == name).sum()) for name in ("train", "val", "test", "holdout")},
            "far": 0 if far_X is None else len(far_X),
        },
        "classes": prepared.classes,
        "runs": runs,
        "aggregate": {v: _aggregate(runs[v]) for v in VARIANTS},
        "seconds": round(time.perf_counter() - start, 1),
    }
    if out is not None:
        out = Path(out)
        atomic_write_json(result, out / "metrics.json")
        atomic_write_text(markdown_table(result), out / "metrics.md")
    return result


def _aggregate(per_seed: dict[str, Any]) -> dict[str, Any]:
    runs = list(per_seed.values())
    agg: dict[str, Any] = {"accuracy": mean_std([r["accuracy"] for r in runs]), "ood": {}}
    for ood_set, scores in runs[0]["ood"].items():
        agg["ood"][ood_set] = {
            score: {metric: mean_std([r["ood"][ood_set][score][metric] for r in runs]) for metric in metrics}
            for score, metrics in scores.items()
        }
    return agg


def markdown_table(result: dict[str, Any]) -> str:
    """One row per variant: accuracy, then AUROC and FPR95 per OOD set and score, as mean ± std."""

    def cell(stat: dict[str, float], percent: bool = True) -> str:
        scale = 100 if percent else 1
        return f"{stat['mean'] * scale:.1f} ± {stat['std'] * scale:.1f}"

    agg = result["aggregate"]
    sets = list(agg[VARIANTS[0]]["ood"])
    header = ["variant", "accuracy"]
    for ood_set in sets:
        for score in ("energy", "msp"):
            header += [f"{ood_set} {score} AUROC", f"{ood_set} {score} FPR95"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for variant in VARIANTS:
        row = [variant, cell(agg[variant]["accuracy"])]
        for ood_set in sets:
            for score in ("energy", "msp"):
                s = agg[variant]["ood"][ood_set][score]
                row += [cell(s["auroc"]), cell(s["fpr95"])]
        lines.append("| " + " | ".join(row) + " |")
    n = len(result["seeds"])
    lines.append("")
    lines.append(f"Mean ± sample std over {n} seeds, in percent ({result['data']['data']}).")
    return "\n".join(lines) + "\n"
