"""The rank-one edit: ROME's closed-form update of one MLP output projection, and its exact undo.

With the neurons k as input, the projection maps k -> W k (+ b). Given the key k* and the value v* = W k* + b +
delta, ROME's update (eq. 2 of the paper) is W' = W + Lambda (C^-1 k*)^T with Lambda = delta / ((C^-1 k*)^T k*),
so that W' k* + b = v* exactly, while keys orthogonal to k* under C^-1 (C = E[k k^T]) are left as they were.

``Edit.apply`` keeps a copy of the weight and ``undo`` restores it bit for bit (adding and subtracting the
update would not); ``undo`` refuses when the weight was changed since (a later edit on the same layer). An
``Edit`` may also hold a rank-r update (MEMIT's, one per layer: ``algorithm.memit``); ``load_edit`` reads either
kind of saved delta.
"""

from __future__ import annotations

import json
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save

from neuronmap import __version__
from neuronmap.edit.algorithm.context import context_prefixes
from neuronmap.edit.algorithm.keys import prefix_keys
from neuronmap.edit.algorithm.request import Request
from neuronmap.edit.algorithm.values import compute_value
from neuronmap.edit.hparams import RomeHparams, load_hparams
from neuronmap.edit.prompts import opening_ids
from neuronmap.edit.stats import SecondMoment, hparams_moments
from neuronmap.edit.window import check_request
from neuronmap.errors import NeuronmapError
from neuronmap.models.loader import LoadedModel
from neuronmap.rundir import atomic_write_bytes, atomic_write_json

if TYPE_CHECKING:
    from neuronmap.edit.algorithm.memit_edit import MemitEdit

FORMAT = "neuronmap-rome-delta/1"
_Self = TypeVar("_Self", bound="AppliedDelta")


class AppliedDelta(ABC):
    """What ROME's and MEMIT's edits share: applied for a ``with`` block, and saved as safetensors whose JSON
    metadata names the model, hparams and version beside each kind's own fields."""

    lm: LoadedModel
    hparams: Any
    info: dict[str, Any]

    @property
    @abstractmethod
    def applied(self) -> bool: ...

    @abstractmethod
    def apply(self: _Self) -> _Self: ...

    @abstractmethod
    def undo(self: _Self) -> _Self: ...

    def __enter__(self: _Self) -> _Self:
        return self.apply()

    def __exit__(self, *exc: object) -> None:
        if self.applied:
            self.undo()

    def _metadata(self, own: dict[str, Any]) -> dict[str, Any]:
        return {
            **own,
            "model": self.lm.spec,
            "weights_hash": self.lm.weights_hash,
            "hparams": self.hparams.to_dict() if self.hparams else None,
            # the wall-clock time stays in memory only, so the same edit saves to the same bytes
            "info": {k: v for k, v in self.info.items() if k != "seconds"},
            "neuronmap_version": __version__,
        }

    def _write(self, path: str | Path, tensors: dict[str, torch.Tensor], own: dict[str, Any]) -> Path:
        path = Path(path)
        meta = {"neuronmap": json.dumps(self._metadata(own), default=str)}
        atomic_write_bytes(save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta), path)
        return path


class Edit(AppliedDelta):
    """A rank-one update of layer ``layer``'s output projection: W_view += outer(left, right), where W_view is
    the (d_mlp, d_model) neuron-weights view (so outputs change by (left . k) * right). With ``left`` (d_mlp, r)
    and ``right`` (d_model, r), the rank-r update W_view += left @ right^T (outputs change by right @ left^T k)."""

    def __init__(
        self,
        lm: LoadedModel,
        layer: int,
        left: torch.Tensor,
        right: torch.Tensor,
        request: Request | None = None,
        hparams: RomeHparams | None = None,
        k_star: torch.Tensor | None = None,
        v_star: torch.Tensor | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        lm.adapter.check_layer(layer)
        d_mlp, d_model = lm.adapter.neuron_weights(layer).shape
        rank = tuple(left.shape[1:])
        if left.shape != (d_mlp, *rank) or right.shape != (d_model, *rank) or len(rank) > 1:
            raise NeuronmapError(
                f"edit shapes {tuple(left.shape)} x {tuple(right.shape)} do not fit layer {layer} "
                f"({d_mlp} neurons x {d_model} outputs)"
            )
        self.lm, self.layer = lm, layer
        self.left, self.right = left.detach().to(torch.float64).cpu(), right.detach().to(torch.float64).cpu()
        self.request, self.hparams = request, hparams
        self.k_star, self.v_star = k_star, v_star
        self.info = dict(info or {})
        self._before: torch.Tensor | None = None
        self._after: torch.Tensor | None = None

    def __repr__(self) -> str:
        what = f" {self.request.text!r} -> {self.request.target_new!r}" if self.request else ""
        return f"Edit(layer={self.layer}{what}, applied={self.applied})"

    @property
    def applied(self) -> bool:
        return self._before is not None

    @property
    def module_name(self) -> str:
        return self.lm.adapter.names[self.layer]

    @property
    def layers(self) -> list[int]:
        """The edited layers, as a ``MemitEdit`` lists its own."""
        return [self.layer]

    @property
    def module_names(self) -> list[str]:
        return [self.module_name]

    def matrix(self) -> torch.Tensor:
        """The (d_mlp, d_model) update in the weight's dtype and device (computed in float64)."""
        weight = self.lm.adapter.neuron_weights(self.layer)
        update = torch.outer(self.left, self.right) if self.left.dim() == 1 else self.left @ self.right.T
        return update.to(device=weight.device, dtype=weight.dtype)

    def apply(self) -> Edit:
        if self.applied:
            raise NeuronmapError("this edit is already applied")
        weight = self.lm.adapter.neuron_weights(self.layer)
        update = self.matrix()
        with torch.no_grad():
            self._before = weight.detach().clone()
            weight.add_(update)
            self._after = weight.detach().clone()
        return self

    def undo(self) -> Edit:
        self.check_undo()
        assert self._before is not None  # applied
        weight = self.lm.adapter.neuron_weights(self.layer)
        with torch.no_grad():
            weight.copy_(self._before)
        self._before = self._after = None
        return self

    def check_undo(self) -> None:
        """Raise unless ``undo`` can restore the weight: applied, and not changed since."""
        if self._after is None:
            raise NeuronmapError("this edit is not applied")
        if not torch.equal(self.lm.adapter.neuron_weights(self.layer), self._after):
            raise NeuronmapError(
                f"layer {self.layer} changed since this edit was applied: undo the later edits first"
            )

    # -- files ----------------------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        return self._metadata(self._own())

    def _own(self) -> dict[str, Any]:
        request = self.request.to_dict() if self.request else None
        return {"format": FORMAT, "layer": self.layer, "module": self.module_name, "request": request}

    def save(self, path: str | Path) -> Path:
        """Write the delta (left and right vectors, key and value) as safetensors with JSON metadata."""
        tensors = {"left": self.left, "right": self.right}
        if self.k_star is not None:
            tensors["k_star"] = self.k_star.detach().to(torch.float64).cpu()
        if self.v_star is not None:
            tensors["v_star"] = self.v_star.detach().to(torch.float64).cpu()
        return self._write(path, tensors, self._own())

    @classmethod
    def load(cls, path: str | Path, lm: LoadedModel) -> Edit:
        """A saved delta, for the model it was made on (checked by weights hash and module)."""
        path = Path(path)
        meta, tensors = read_delta(path, FORMAT)
        layer = meta.get("layer")
        check_made_for(path, meta, lm, [layer], [meta.get("module")])
        request = Request.from_dict(meta["request"]) if meta.get("request") else None
        hparams = RomeHparams.from_dict(meta["hparams"]) if meta.get("hparams") else None
        return cls(
            lm,
            meta["layer"],
            tensors["left"],
            tensors["right"],
            request,
            hparams,
            tensors.get("k_star"),
            tensors.get("v_star"),
            meta.get("info"),
        )


def read_delta(path: Path, *formats: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The metadata and tensors of a saved delta of one of ``formats``, or a one-line error."""
    if not path.is_file():
        raise NeuronmapError(f"{path}: no such edit file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {})["neuronmap"])
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except Exception as exc:
        raise NeuronmapError(f"{path}: not a neuronmap edit ({exc})") from None
    if meta.get("format") not in formats:
        raise NeuronmapError(f"{path}: not a neuronmap edit (format {meta.get('format')!r})")
    return meta, tensors


def check_made_for(
    path: Path, meta: dict[str, Any], lm: LoadedModel, layers: list[Any], modules: list[Any]
) -> None:
    """Refuse a saved delta made for another model: its weights hash, layers and module names must match."""
    if (
        meta.get("weights_hash") != lm.weights_hash
        or not layers
        or len(modules) != len(layers)
        or not all(isinstance(layer, int) and 0 <= layer < lm.n_layers for layer in layers)
        or any(module != lm.adapter.names[layer] for layer, module in zip(layers, modules, strict=True))
    ):
        raise NeuronmapError(f"{path}: this edit was made for another model ({meta.get('model')})")


def load_edit(path: str | Path, lm: LoadedModel) -> Edit | MemitEdit:
    """A saved delta of either kind (ROME's ``Edit``, MEMIT's ``MemitEdit``), for the model it was made on."""
    from neuronmap.edit.algorithm.memit_edit import FORMAT as MEMIT_FORMAT
    from neuronmap.edit.algorithm.memit_edit import MemitEdit

    meta, _ = read_delta(Path(path), FORMAT, MEMIT_FORMAT)
    return MemitEdit.load(path, lm) if meta["format"] == MEMIT_FORMAT else Edit.load(path, lm)


def save_model(lm: LoadedModel, out: str | Path, edits: Sequence[Edit | MemitEdit]) -> Path:
    """Write the (edited) model and tokenizer as a Hugging Face folder, with the edits listed beside them."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise NeuronmapError(f"{out}: exists and is not empty; choose a new folder for the edited model")
    lm.model.save_pretrained(out)
    lm.tokenizer.save_pretrained(out)
    atomic_write_json({"edits": [e.metadata() for e in edits if e.applied]}, out / "neuronmap_edits.json")
    return out


def rome(
    lm: LoadedModel,
    request: Request | dict[str, Any],
    hparams: RomeHparams | str | Path | None = None,
    *,
    layer: int | None = None,
    stats: SecondMoment | None = None,
    prefixes: list[str] | None = None,
    progress: bool = False,
) -> Edit:
    """Compute (not apply) the ROME edit of ``request`` on ``lm``: ``rome(...).apply()`` rewrites the fact.

    ``hparams`` defaults to the model family's file; ``layer`` overrides its layer. ``stats`` (E[k k^T] of the
    layer) and ``prefixes`` are computed (and cached) when not given. Bad requests raise ``NeuronmapError``
    before anything is computed; the model's weights are never changed here.
    """
    start = time.perf_counter()
    req = (request if isinstance(request, Request) else Request.from_dict(request)).validate()
    if not isinstance(hparams, RomeHparams):
        hparams = load_hparams(hparams, model=lm.spec)
    if layer is not None:
        hparams = hparams.replace(layer=layer)
    lay = lm.adapter.check_layer(hparams.resolve_layer(lm.n_layers))
    check_request(lm, hparams, req, f"the request for {req.subject!r}")
    if stats is not None and stats.layer != lay:
        raise NeuronmapError(f"statistics of layer {stats.layer} given for an edit of layer {lay}")
    prefixes = context_prefixes(lm, hparams) if prefixes is None else prefixes
    prefixes = prefixes if "" in prefixes else ["", *prefixes]  # the bare prompt is always one context
    keys = prefix_keys(lm, lay, req, prefixes, opening_ids(lm.tokenizer, hparams.document_start)).cpu()
    k_mean = keys.mean(0)
    if hparams.mom2_adjustment:
        if stats is None:
            stats = hparams_moments(lm, hparams, [lay], progress)[lay]
        left = stats.solve(k_mean, hparams.mom2_ridge)
    else:
        left = k_mean.clone()
    # The key that maps exactly to its output + delta: the bare prompt's (ROME's code) or the mean (the paper).
    k_star = k_mean if hparams.key_constraint == "mean" else keys[prefixes.index("")]
    value = compute_value(lm, lay, req, prefixes, hparams, progress=progress)
    delta = value.delta.to(torch.float64).cpu()
    left = left / torch.dot(left, k_star)  # so that left . k* = 1
    module = lm.adapter.modules[lay]
    with torch.no_grad():
        out_star = module(k_star.to(device=lm.device, dtype=lm.dtype)[None])[0].to(torch.float64).cpu()
    info = {
        "steps": value.steps,
        "losses": value.losses,
        "delta_norm": float(delta.norm()),
        "v_init_norm": value.v_init_norm,
        "mean_key_gain": float(torch.dot(left, k_mean)),  # the share of delta the mean key gets
        "seconds": round(time.perf_counter() - start, 3),
        "stats_tokens": stats.n_tokens if stats is not None else None,
    }
    return Edit(lm, lay, left, delta, req, hparams, k_star, out_star + delta, info)
