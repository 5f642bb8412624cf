"""The trainable MLP head on frozen sentence embeddings, and how a trained classifier is saved and loaded.

The head is ``standardise -> dropout -> Linear(d, hidden) -> ReLU`` (the penultimate features, where the
generative models live) ``-> Linear(hidden, classes)`` (the final layer that turns virtual outliers into
logits). A one-weight logistic ``ood`` layer maps the negative energy to "in-distribution" for the VOS
uncertainty loss; it is trained only with ``--vos`` and kept for inspection.

A classifier directory holds ``head.safetensors`` (weights, no pickle), ``classifier.json`` (everything needed
to rebuild and reuse it: encoder and its weights hash, classes, sizes, training config, metrics) and
``split.parquet`` (every text with its label and split), so that synthesis and evaluation need neither the
original file nor, on a cache hit, the encoder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from neuronmap.errors import NeuronmapError

HEAD_FILE = "head.safetensors"
META_FILE = "classifier.json"
SPLIT_FILE = "split.parquet"
FORMAT = 1


class MLPHead(nn.Module):
    """Embedding -> penultimate features (ReLU) -> class logits."""

    mean: torch.Tensor  # buffers, registered in __init__ (torch types them as tensor or module otherwise)
    scale: torch.Tensor

    def __init__(self, d_in: int, hidden: int, n_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(d_in))
        self.register_buffer("scale", torch.ones(d_in))
        self.body = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_in, hidden), nn.ReLU())
        self.final = nn.Linear(hidden, n_classes)
        self.ood = nn.Linear(1, 1)

    def set_standardisation(self, x: torch.Tensor) -> None:
        """Centre and scale inputs with training statistics: Adam then sees well-conditioned features."""
        self.mean.copy_(x.mean(0))
        self.scale.copy_(x.std(0).clamp(min=1e-6))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body((x - self.mean) / self.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.features(x))


@dataclass
class Classifier:
    """A trained head with what it was trained on: enough to reuse it without the original command."""

    head: MLPHead
    classes: list[str]
    encoder: str
    weights_hash: str
    max_length: int
    config: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.float32))

    @torch.no_grad()
    def features(self, embeddings: np.ndarray) -> np.ndarray:
        self.head.eval()
        return self.head.features(self._tensor(embeddings)).numpy()

    @torch.no_grad()
    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        self.head.eval()
        return self.head(self._tensor(embeddings)).numpy()

    @torch.no_grad()
    def logits_from_features(self, features: np.ndarray) -> np.ndarray:
        self.head.eval()
        return self.head.final(self._tensor(features)).numpy()

    def class_index(self, label: str) -> int:
        if label not in self.classes:
            shown = ", ".join(map(repr, self.classes))
            raise NeuronmapError(f"no class {label!r} in this classifier (classes: {shown})")
        return self.classes.index(label)

    def save(self, folder: str | Path, split_table: Any | None = None) -> Path:
        """Write the folder: every file is written in full before any replaces its previous version, and
        ``classifier.json`` comes last, so a killed or failed save (a full disk) leaves the old classifier whole."""
        from safetensors.torch import save

        from neuronmap.rundir import atomic_write_group, json_text, parquet_writer

        folder = Path(folder)
        state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        head = save(state)
        writers = [(folder / HEAD_FILE, lambda tmp: tmp.write_bytes(head))]
        if split_table is not None:
            writers.append((folder / SPLIT_FILE, parquet_writer(split_table)))
        meta = {
            "format": FORMAT,
            "classes": self.classes,
            "encoder": self.encoder,
            "weights_hash": self.weights_hash,
            "max_length": self.max_length,
            "d_in": int(self.head.mean.shape[0]),
            "hidden": int(self.head.final.in_features),
            "config": self.config,
            "info": self.info,
        }
        text = json_text(meta)
        # classifier.json goes last: its presence means the folder is complete
        writers.append((folder / META_FILE, lambda tmp: tmp.write_text(text, "utf-8")))
        atomic_write_group(writers)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Classifier:
        from safetensors.torch import load_file

        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise NeuronmapError(f"{folder}: not a trained classifier (no {META_FILE}; run `outliers train`)")
        try:
            meta = json.loads(meta_path.read_text("utf-8"))
            head = MLPHead(
                meta["d_in"], meta["hidden"], len(meta["classes"]), meta["config"].get("dropout", 0.0)
            )
            head.load_state_dict(load_file(str(folder / HEAD_FILE)))
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise NeuronmapError(f"{folder}: damaged classifier ({exc})") from None
        head.eval()
        return cls(
            head,
            list(meta["classes"]),
            meta["encoder"],
            meta["weights_hash"],
            int(meta["max_length"]),
            meta["config"],
            meta.get("info", {}),
        )


def read_split(folder: str | Path) -> Any:
    from neuronmap.rundir import read_parquet

    path = Path(folder) / SPLIT_FILE
    if not path.is_file():
        raise NeuronmapError(f"{folder}: no {SPLIT_FILE} (the classifier folder is incomplete)")
    return read_parquet(path)
