"""A MEMIT edit: one low-rank update per layer, applied, undone and saved together.

Each layer's update is an :class:`~neuronmap.edit.algorithm.edit.Edit` of rank r (the number of facts), so the
exact undo (a kept copy of each weight) and the refusal to undo under a later edit are ROME's. ``undo`` checks
every layer before restoring any, so a refused undo changes nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from neuronmap.edit.algorithm.edit import AppliedDelta, Edit, check_made_for, read_delta
from neuronmap.edit.algorithm.request import Request
from neuronmap.edit.hparams import MemitHparams
from neuronmap.errors import NeuronmapError
from neuronmap.models.loader import LoadedModel

FORMAT = "neuronmap-memit-delta/1"


class MemitEdit(AppliedDelta):
    """The updates of ``layers`` (increasing) that write ``requests`` at once, with their targets ``zs`` (N, d_model):
    the residual stream wanted at the last layer, at each subject's last token."""

    def __init__(
        self,
        lm: LoadedModel,
        edits: list[Edit],
        requests: list[Request],
        hparams: MemitHparams | None = None,
        zs: torch.Tensor | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        layers = [e.layer for e in edits]
        if not edits or any(b <= a for a, b in zip(layers, layers[1:], strict=False)):
            raise NeuronmapError(f"a MEMIT edit needs increasing layers, got {layers}")
        self.lm, self.edits, self.requests, self.hparams = lm, edits, list(requests), hparams
        self.zs = None if zs is None else zs.detach().to(torch.float64).cpu()
        self.info = dict(info or {})

    def __repr__(self) -> str:
        return f"MemitEdit(layers={self.layers}, requests={len(self.requests)}, applied={self.applied})"

    @property
    def layers(self) -> list[int]:
        return [e.layer for e in self.edits]

    @property
    def module_names(self) -> list[str]:
        return [e.module_name for e in self.edits]

    @property
    def applied(self) -> bool:
        return all(e.applied for e in self.edits)

    def apply(self) -> MemitEdit:
        if any(e.applied for e in self.edits):
            raise NeuronmapError("this edit is already applied")
        done: list[Edit] = []
        try:
            for e in self.edits:
                done.append(e.apply())
        except BaseException:
            for e in reversed(done):
                e.undo()
            raise
        return self

    def undo(self) -> MemitEdit:
        for e in self.edits:  # every layer first: a refusal leaves the model as it is
            e.check_undo()
        for e in reversed(self.edits):
            e.undo()
        return self

    # -- files ----------------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return self._metadata(self._own())

    def _own(self) -> dict[str, Any]:
        requests = [r.to_dict() for r in self.requests]
        return {"format": FORMAT, "algorithm": "memit", "layers": self.layers, "modules": self.module_names,
                "requests": requests}  # fmt: skip

    def save(self, path: str | Path) -> Path:
        """Write each layer's left (d_mlp, N) and right (d_model, N) factors and the targets as safetensors."""
        tensors = {}
        for e in self.edits:
            tensors[f"left.{e.layer}"], tensors[f"right.{e.layer}"] = e.left, e.right
        if self.zs is not None:
            tensors["zs"] = self.zs
        return self._write(path, tensors, self._own())

    @classmethod
    def load(cls, path: str | Path, lm: LoadedModel) -> MemitEdit:
        """A saved MEMIT delta, for the model it was made on (checked by weights hash and modules)."""
        path = Path(path)
        meta, tensors = read_delta(path, FORMAT)
        layers, modules = list(meta.get("layers") or []), list(meta.get("modules") or [])
        check_made_for(path, meta, lm, layers, modules)
        try:
            edits = [Edit(lm, layer, tensors[f"left.{layer}"], tensors[f"right.{layer}"]) for layer in layers]
            requests = [Request.from_dict(r) for r in meta.get("requests") or []]
        except KeyError as exc:
            raise NeuronmapError(f"{path}: not a complete MEMIT edit (no {exc})") from None
        hparams = MemitHparams.from_dict(meta["hparams"]) if meta.get("hparams") else None
        return cls(lm, edits, requests, hparams, tensors.get("zs"), meta.get("info"))
