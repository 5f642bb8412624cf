"""Architecture adapters: where each layer's MLP neurons live.

A neuron is one coordinate of the input to the MLP output projection (the README's "The neuron"). The adapter finds those modules
by name: a known ``model_type`` names its pattern; an unknown one is tried against every pattern and accepted only
when exactly one matches a full, shape-consistent stack of layers.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from neuronmap.errors import NeuronmapError

if TYPE_CHECKING:
    from transformers import PreTrainedModel


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    pattern: str  # suffix regex on module names; group 1 is the layer index
    causal: bool


FAMILIES: tuple[Family, ...] = (
    Family("gpt2", ("gpt2",), r"(?:^|\.)h\.(\d+)\.mlp\.c_proj$", True),
    Family(
        "llama",
        ("llama", "mistral", "qwen2", "qwen3", "olmo", "olmo2"),
        r"(?:^|\.)layers\.(\d+)\.mlp\.down_proj$",
        True,
    ),
    Family(
        "gemma",
        ("gemma", "gemma2", "gemma3", "gemma3_text"),
        r"(?:^|\.)layers\.(\d+)\.mlp\.down_proj$",
        True,
    ),
    Family("gpt_neox", ("gpt_neox",), r"(?:^|\.)layers\.(\d+)\.mlp\.dense_4h_to_h$", True),
    Family("bert", ("bert", "roberta"), r"(?:^|\.)layer\.(\d+)\.output\.dense$", False),
)
SUPPORTED = ", ".join(f"{f.name} ({'/'.join(f.model_types)})" for f in FAMILIES)


def weight_of(module: nn.Module) -> torch.Tensor:
    """``module.weight`` (torch types a module's attributes as tensor or module): (out, in) for ``nn.Linear``,
    (in, out) for transformers' Conv1D, (vocab, d_model) for an embedding."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor):
        raise NeuronmapError(f"{type(module).__name__} has no weight matrix")
    return weight


def _in_features(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.in_features
    # transformers' Conv1D (GPT-2) stores its weight as (in, out).
    weight = getattr(module, "weight", None)
    if hasattr(module, "nf") and isinstance(weight, torch.Tensor):
        return int(weight.shape[0])
    raise NeuronmapError(f"unsupported output projection type {type(module).__name__}")


def _match(model: nn.Module, pattern: str) -> list[tuple[str, nn.Module]] | None:
    found: dict[int, tuple[str, nn.Module]] = {}
    for name, module in model.named_modules():
        m = re.search(pattern, name)
        if m:
            found[int(m.group(1))] = (name, module)
    if not found or sorted(found) != list(range(len(found))):
        return None
    return [found[i] for i in range(len(found))]


class Adapter:
    """The neurons of one model: per-layer output-projection modules, ``n_layers`` and ``d_mlp``."""

    def __init__(self, model: PreTrainedModel) -> None:
        config = getattr(model, "config", None)
        model_type = getattr(config, "model_type", None)
        known = [f for f in FAMILIES if model_type in f.model_types]
        candidates = known or list(FAMILIES)
        matches = [(f, hits) for f in candidates if (hits := _match(model, f.pattern))]
        if not known:
            # Detection by shape: the projection must widen the residual stream, the mark of an MLP.
            matches = [(f, hits) for f, hits in matches if self._mlp_shaped(hits)]
            if len({tuple(name for name, _ in hits) for _, hits in matches}) != 1:
                raise NeuronmapError(
                    f"unsupported architecture '{model_type or type(model).__name__}'; supported: {SUPPORTED}"
                )
            warnings.warn(
                f"unknown model_type '{model_type}': using the {matches[0][0].name} layout found by shape",
                stacklevel=2,
            )
        if not matches:
            raise NeuronmapError(
                f"model of type '{model_type}' has no MLP output projections where expected; supported: {SUPPORTED}"
            )
        self.family, hits = matches[0]
        self.model = model
        self.model_type = model_type
        self.names = [name for name, _ in hits]
        self.modules: list[nn.Module] = [module for _, module in hits]
        widths = {_in_features(m) for m in self.modules}
        if len(widths) != 1:
            raise NeuronmapError(f"layers of this model have different MLP widths {sorted(widths)}")
        self.d_mlp = widths.pop()
        self.n_layers = len(self.modules)
        self.is_causal = self.family.causal

    @staticmethod
    def _mlp_shaped(hits: list[tuple[str, nn.Module]]) -> bool:
        try:
            return all(_in_features(m) > _out_features(m) for _, m in hits)
        except NeuronmapError:
            return False

    def __repr__(self) -> str:
        return f"Adapter({self.family.name}, layers={self.n_layers}, d_mlp={self.d_mlp})"

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.d_mlp

    def neuron_weights(self, layer: int) -> torch.Tensor:
        """The output weights of every neuron of ``layer`` as a (d_mlp, d_model) view (edits write through)."""
        self.check_layer(layer)
        module = self.modules[layer]
        return module.weight.T if isinstance(module, nn.Linear) else weight_of(module)

    def input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def check_layer(self, layer: int) -> int:
        if not 0 <= layer < self.n_layers:
            raise NeuronmapError(f"layer {layer} out of range: this model has layers 0..{self.n_layers - 1}")
        return layer

    def resolve_layers(self, layers: list[int] | None) -> list[int]:
        """Validate a user's layer list (negative indices count from the end); None means every layer."""
        if layers is None:
            return list(range(self.n_layers))
        resolved = sorted(
            {self.check_layer(layer + self.n_layers if layer < 0 else layer) for layer in layers}
        )
        if not resolved:
            raise NeuronmapError("no layers selected")
        return resolved


def _out_features(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.out_features
    return int(weight_of(module).shape[1])
