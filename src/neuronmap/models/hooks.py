"""Neuron hooks in the style of baukit's ``nethook``: attach inside a ``with`` block, detach on exit.

A hook sits before each chosen layer's MLP output projection, where the neurons are its input. It can edit the
neurons (replace, scale, add: any function of the tensor) and capture them, for all positions or chosen ones.
Nothing stays attached after the block, also when the block raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from neuronmap.models.adapters import Adapter

EditFn = Callable[[int, torch.Tensor], torch.Tensor]
Positions = int | torch.Tensor | None


class HookSet:
    """Owns registered torch hook handles: removed on exit, on error while registering, or by ``remove()``."""

    def __init__(self) -> None:
        self._handles: list[RemovableHandle] = []

    def _register(self, handles: Iterable[RemovableHandle]) -> None:
        # A generator: each handle is kept as it is made, so a failure part-way still removes the earlier ones.
        try:
            self._handles.extend(handles)
        except BaseException:
            self.remove()
            raise

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


class NeuronHook(HookSet):
    """Capture and/or edit the MLP neurons of chosen layers for the duration of a ``with`` block.

    ``edit(layer, x)`` receives the neurons as a (batch, seq, d_mlp) tensor and returns the tensor to use instead.
    After the forward pass, ``acts[layer]`` holds the neurons the layer used (after the edit): the whole
    (batch, seq, d_mlp) tensor, or (batch, d_mlp) at ``positions`` (an int, or one index per batch row).
    With ``grad=True`` the captured tensors stay in the autograd graph, so ``torch.autograd.grad(metric, acts)``
    gives d metric / d neuron even when the model's parameters are frozen.
    """

    def __init__(
        self,
        adapter: Adapter,
        layers: Iterable[int] | None = None,
        *,
        capture: bool = True,
        edit: EditFn | None = None,
        positions: Positions = None,
        grad: bool = False,
    ) -> None:
        self.adapter = adapter
        self.layers = adapter.resolve_layers(None if layers is None else list(layers))
        self.capture = capture
        self.edit = edit
        self.positions = positions
        self.grad = grad
        self.acts: dict[int, torch.Tensor] = {}
        super().__init__()

    def _pre_hook(self, layer: int) -> Callable[..., Any]:
        # With frozen weights nothing requires grad; a leaf at the lowest hooked layer starts the graph there,
        # so the blocks below it keep nothing for a backward pass that never reaches them (with --layers -1 on
        # SmolLM2 that is 29 of 30 blocks' saved activations). The gradients at the hooked layers are the same.
        leaf = self.grad and layer == min(self.layers)

        def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
            x = args[0]
            if self.edit is not None:
                x = self.edit(layer, x)
            if leaf and not x.requires_grad:
                x = x.detach().requires_grad_(True)
            if self.capture:
                kept = x if self.grad else x.detach()
                self.acts[layer] = _select(kept, self.positions)
            return (x, *args[1:]) if x is not args[0] else None

        return hook

    def __enter__(self) -> NeuronHook:
        self.acts = {}
        self._register(
            self.adapter.modules[layer].register_forward_pre_hook(self._pre_hook(layer))
            for layer in self.layers
        )
        return self


def _select(x: torch.Tensor, positions: Positions) -> torch.Tensor:
    if positions is None:
        return x
    if isinstance(positions, int):
        return x[:, positions]
    return x[torch.arange(x.shape[0], device=x.device), positions.to(x.device)]
