"""``neuronmap outliers train``: data -> cached embeddings -> MLP head (optionally with VOS) -> classifier folder.

``prepare`` is shared with ``evaluate`` and ``refine``: it loads the labelled texts, splits them (the split
depends only on ``data_seed``, so runs with different training seeds compare on the same test set), and embeds
every text once through the cache.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from neuronmap.errors import NeuronmapError
from neuronmap.outliers.classifier import META_FILE, Classifier
from neuronmap.outliers.data import LabelledTexts, load_labelled, split_labels
from neuronmap.outliers.embed import embed_texts
from neuronmap.outliers.metrics import accuracy, detection_metrics
from neuronmap.outliers.vos import TrainConfig, fit_head

if TYPE_CHECKING:
    from neuronmap.models.loader import LoadedModel


@dataclass
class DataConfig:
    """Where the texts come from, how they are split and how they are embedded."""

    data: str
    encoder: str = "minilm-l6"
    text_column: str = "text"
    label_column: str = "label"
    limit: int | None = None
    holdout: list[str] = field(default_factory=list)
    val: float = 0.15
    test: float = 0.15
    data_seed: int = 0
    max_length: int = 128
    embed_batch_size: int = 32
    device: str | None = None
    dtype: str | None = None  # the encoder's; part of the embedding cache key

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Prepared:
    """Texts, split, embeddings and class indices (``-1`` for held-out labels)."""

    data: LabelledTexts
    split: np.ndarray
    X: np.ndarray
    y: np.ndarray
    classes: list[str]
    weights_hash: str

    def part(self, name: str) -> np.ndarray:
        return np.flatnonzero(self.split == name)

    def split_table(self) -> Any:
        import pandas as pd

        return pd.DataFrame(
            {"text": self.data.texts, "label": self.data.labels, "split": self.split.astype(str)}
        )


def prepare(config: DataConfig, *, loaded: LoadedModel | None = None, progress: bool = True) -> Prepared:
    data = load_labelled(
        config.data,
        text_column=config.text_column,
        label_column=config.label_column,
        limit=config.limit,
        seed=config.data_seed,
    )
    labels = cast(list[str], data.labels)  # load_labelled required a label on every row
    split = split_labels(
        labels, holdout=config.holdout, val=config.val, test=config.test, seed=config.data_seed
    )
    X, weights_hash = embed_texts(
        data.texts,
        config.encoder,
        loaded=loaded,
        max_length=config.max_length,
        batch_size=config.embed_batch_size,
        device=config.device,
        dtype=config.dtype,
        progress=progress,
    )
    classes = sorted({label for label, s in zip(labels, split, strict=True) if s != "holdout"})
    lookup = {c: i for i, c in enumerate(classes)}
    y = np.array([lookup.get(label, -1) for label in labels], dtype=np.int64)
    return Prepared(data, split, X, y, classes, weights_hash)


def evaluate_split(
    classifier: Classifier, prepared: Prepared, far_X: np.ndarray | None = None
) -> dict[str, Any]:
    """Accuracy on val/test and OOD detection of test against held-out labels (near) and ``far_X``."""
    out: dict[str, Any] = {}
    for name in ("val", "test"):
        idx = prepared.part(name)
        out[f"{name}_accuracy"] = accuracy(classifier.logits(prepared.X[idx]), prepared.y[idx])
    test_logits = classifier.logits(prepared.X[prepared.part("test")])
    ood: dict[str, Any] = {}
    holdout = prepared.part("holdout")
    if len(holdout):
        ood["near"] = detection_metrics(test_logits, classifier.logits(prepared.X[holdout]))
    if far_X is not None and len(far_X):
        ood["far"] = detection_metrics(test_logits, classifier.logits(far_X))
    out["ood"] = ood
    return out


def fit_classifier(
    prepared: Prepared, config: TrainConfig, data_config: DataConfig, progress: bool
) -> Classifier:
    train = prepared.part("train")
    head, history = fit_head(
        prepared.X[train], prepared.y[train], len(prepared.classes), config, progress=progress
    )
    return Classifier(
        head,
        prepared.classes,
        data_config.encoder,
        prepared.weights_hash,
        data_config.max_length,
        config.to_dict(),
        {"data": data_config.to_dict(), "history": history},
    )


@dataclass
class TrainResult:
    classifier: Classifier
    path: Path
    summary: dict[str, Any]


def train_classifier(
    data_config: DataConfig,
    config: TrainConfig,
    out: str | Path,
    *,
    force: bool = False,
    progress: bool = True,
) -> TrainResult:
    """Train and save a classifier folder; refuses to replace one unless ``force``."""
    out = Path(out)
    if (out / META_FILE).exists() and not force:
        raise NeuronmapError(f"{out}: already holds a classifier (use --force to replace it)")
    config.check()
    start = time.perf_counter()
    prepared = prepare(data_config, progress=progress)
    classifier = fit_classifier(prepared, config, data_config, progress)
    metrics = evaluate_split(classifier, prepared)
    counts = {name: int((prepared.split == name).sum()) for name in ("train", "val", "test", "holdout")}
    summary = {
        "classes": prepared.classes,
        "holdout": list(data_config.holdout),
        "split": counts,
        "encoder": data_config.encoder,
        "dim": int(prepared.X.shape[1]),
        "vos": config.vos,
        **metrics,
    }
    classifier.info["summary"] = summary
    # Wall-clock time is kept apart, in one field: the rest of classifier.json is the same on every run.
    classifier.info["timing"] = {"seconds": round(time.perf_counter() - start, 2)}
    classifier.save(out, prepared.split_table())
    return TrainResult(classifier, out, {**summary, **classifier.info["timing"]})
