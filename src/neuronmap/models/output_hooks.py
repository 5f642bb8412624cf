"""Forward hooks on named modules (layer outputs, attention, MLP), removed on exit, in the style of baukit.

``NeuronHook`` (models/hooks.py) sits on the *input* of the MLP output projection. Causal tracing and ROME also
need the *outputs* of whole blocks, attention and MLP modules, and ROME's value search adds a vector to the
output projection's output. ``OutputHooks`` edits or records any named module's output inside a ``with`` block.

``replay_blocks`` skips the blocks before a layer by replaying a recorded block output: runs that only differ
from a recorded run at or after layer ``l`` need not recompute layers ``0..l-1`` (causal tracing restores one
layer at a time; ROME's value search only changes layer ``l``). Swapped-in stubs are put back on exit.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from neuronmap.errors import NeuronmapError
from neuronmap.models.adapters import Adapter
from neuronmap.models.hooks import HookSet

KINDS = ("hidden", "mlp", "attn")
_ATTN_NAMES = ("self_attn", "attn", "attention")

OutputEdit = Callable[[torch.Tensor], torch.Tensor]


def block_name(adapter: Adapter, layer: int) -> str:
    """The transformer block of ``layer``: the module path up to the layer index in the projection's name."""
    adapter.check_layer(layer)
    m = re.search(adapter.family.pattern, adapter.names[layer])
    assert m is not None  # the adapter found the name with this pattern
    return adapter.names[layer][: m.end(1)]


def module_name(adapter: Adapter, kind: str, layer: int) -> str:
    """Name of the module whose output is the ``kind`` state of ``layer``: the block (hidden), its MLP, its attention."""
    block = block_name(adapter, layer)
    if kind == "hidden":
        return block
    modules = dict(adapter.model.named_modules())
    if kind == "mlp":
        if f"{block}.mlp" in modules:
            return f"{block}.mlp"
    elif kind == "attn":
        for name in _ATTN_NAMES:
            if f"{block}.{name}" in modules:
                return f"{block}.{name}"
    else:
        raise NeuronmapError(f"unknown state kind '{kind}' (choose from {', '.join(KINDS)})")
    raise NeuronmapError(f"cannot find the {kind} module of {block} in this {adapter.family.name} model")


def _main(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _with_main(output: Any, main: torch.Tensor) -> Any:
    return (main, *output[1:]) if isinstance(output, tuple) else main


class OutputHooks(HookSet):
    """Edit and/or record the outputs of named modules for the duration of a ``with`` block.

    ``edits[name](x)`` gets the module's main output tensor (the first element of a tuple output) and returns
    the tensor to use instead; ``record`` names modules whose (edited) main outputs land in ``outputs[name]``.
    """

    def __init__(
        self,
        model: nn.Module,
        edits: dict[str, OutputEdit] | None = None,
        record: list[str] | tuple[str, ...] = (),
        detach: bool = True,
    ) -> None:
        self.model = model
        self.edits = dict(edits or {})
        self.record = tuple(record)
        self.detach = detach
        self.outputs: dict[str, torch.Tensor] = {}
        super().__init__()

    def _hook(self, name: str) -> Callable[..., Any]:
        def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
            main = _main(output)
            edited = name in self.edits
            if edited:
                main = self.edits[name](main)
            if name in self.record:
                self.outputs[name] = main.detach() if self.detach else main
            return _with_main(output, main) if edited else None

        return hook

    def __enter__(self) -> OutputHooks:
        self.outputs = {}
        modules = dict(self.model.named_modules())

        def register() -> Iterator[torch.utils.hooks.RemovableHandle]:
            for name in dict.fromkeys([*self.edits, *self.record]):
                if name not in modules:
                    raise NeuronmapError(f"no module named '{name}' in this model")
                yield modules[name].register_forward_hook(self._hook(name))

        self._register(register())
        return self


class _Replay(nn.Module):
    """Stands in for a block: ignores its input and returns a recorded output."""

    def __init__(self, output: torch.Tensor) -> None:
        super().__init__()
        self.output = output

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.output


@contextlib.contextmanager
def replay_blocks(adapter: Adapter, layer: int, output: torch.Tensor) -> Iterator[None]:
    """Within the block, blocks ``0..layer`` are not run: block ``layer`` returns ``output`` (its recorded hidden
    states, already edited as wanted) and the blocks before it return it too (nobody reads those).

    Valid only where every block returns its hidden states as a tensor and no block after ``layer`` reads an
    earlier block's output (true of the supported decoder families in transformers 5).
    """
    parents = []
    for lay in range(layer + 1):
        name = block_name(adapter, lay)
        parent_name, _, index = name.rpartition(".")
        parent = adapter.model.get_submodule(parent_name)
        parents.append((parent, index, parent._modules[index]))
    stub = _Replay(output)
    try:
        for parent, index, _ in parents:
            parent._modules[index] = stub
        yield
    finally:
        for parent, index, original in parents:
            parent._modules[index] = original


class StopForward(Exception):
    """Raised by a hook to end a forward pass once the needed layers have run."""


@contextlib.contextmanager
def stop_after(model: nn.Module, name: str) -> Iterator[None]:
    """End a forward pass inside the block right after module ``name`` has run (the later layers are not
    computed; the model's return value is lost, so read what you need through hooks)."""

    def hook(module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        raise StopForward

    handle = model.get_submodule(name).register_forward_hook(hook)
    try:
        yield
    except StopForward:
        pass
    finally:
        handle.remove()
