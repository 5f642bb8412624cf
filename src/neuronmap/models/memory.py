"""Memory planned, not discovered: what a forward (and backward) pass will take, and what it may take.

The estimate counts, beyond the weights already loaded, the three things that grow with the input:
- the working set of one block in a pass without gradients (its temporaries live only while it runs);
- what each block above the lowest hooked layer keeps for the backward pass (``grad_layers`` of them: the
  gradient starts at the lowest hooked layer, see ``models.hooks``);
- the logits at the positions read, in float32 with a log-softmax copy.
Plus a fixed part as large as the weights (the first pass touches every page of the lazily mapped weights and
fills the allocator's arenas) and :data:`FIXED`. The coefficients are per token and measured on SmolLM2-135M and the tiny models
(peak RSS of a process, ``bench/bench_window.py`` and ``tests/models/test_memory.py``), rounded up: the estimate
is meant to be above the real peak, not equal to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import psutil

from neuronmap.errors import NeuronmapError

if TYPE_CHECKING:  # torch is imported where a device is asked: a size is parsed without it
    import torch
    from transformers import PreTrainedModel

# A batch may take this share of the memory available when the command starts, unless --max-memory says otherwise:
# the rest is for the tables, the tokenizer, Python itself and whatever else the machine runs.
DEFAULT_SHARE = 0.7
# Elements per token: one block's temporaries without gradients, and one block's tensors kept for a backward pass.
WORKING = (8, 6)  # x d_model, x d_mlp
SAVED = (9, 5)  # x d_model, x d_mlp
LOGIT_COPIES = 3  # float32 logits, their log-softmax, and a gather's buffer
FIXED = 64 * 2**20  # thread buffers and allocator slack of any pass, however small

_UNITS = {
    "": 1,
    "B": 1,
    "K": 2**10,
    "KB": 2**10,
    "M": 2**20,
    "MB": 2**20,
    "G": 2**30,
    "GB": 2**30,
    "T": 2**40,
    "TB": 2**40,
}
_SIZE = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(%|[KMGT]?B?|[KMGT]iB)\s*", re.IGNORECASE)


def format_bytes(n: float) -> str:
    return f"{n / 2**30:.1f} GB" if n >= 2**30 else f"{n / 2**20:.0f} MB"


def available_bytes(device: torch.device | str = "cpu") -> int:
    """Memory free for new work now: the device's free memory on CUDA, the system's available memory else."""
    if str(device) == "cpu":  # without importing torch
        return int(psutil.virtual_memory().available)
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(psutil.virtual_memory().available)


@dataclass(frozen=True)
class Budget:
    bytes: int
    rule: str  # how it was set, for messages and run.json

    def describe(self) -> str:
        return f"{format_bytes(self.bytes)} ({self.rule})"


def memory_budget(spec: str | int | None, device: torch.device | str = "cpu") -> Budget:
    """``--max-memory``: bytes (an int), a size ("6GB", "800MB", "1.5G"), a share of the available memory ("50%"),
    or None for :data:`DEFAULT_SHARE` of it."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        if spec < 1:
            raise NeuronmapError(f"--max-memory must be positive (got {spec})")
        return Budget(spec, f"--max-memory {format_bytes(spec)}")
    if spec is None:
        free = available_bytes(device)
        return Budget(int(free * DEFAULT_SHARE), f"{DEFAULT_SHARE:.0%} of {format_bytes(free)} available")
    match = _SIZE.fullmatch(str(spec))
    if match is None:
        raise NeuronmapError(f"--max-memory takes a size such as 6GB, 800MB or 50% (got {spec!r})")
    value, unit = float(match.group(1)), match.group(2).upper().replace("IB", "B")
    if unit == "%":
        if not 0 < value <= 100:
            raise NeuronmapError(f"--max-memory as a share must be between 0 and 100% (got {spec!r})")
        free = available_bytes(device)
        return Budget(int(free * value / 100), f"{value:g}% of {format_bytes(free)} available")
    size = int(value * _UNITS[unit])
    if size < 2**20:
        raise NeuronmapError(f"--max-memory {spec!r} is less than a megabyte; give a unit (6GB, 800MB)")
    return Budget(size, f"--max-memory {spec}")


@dataclass(frozen=True)
class Footprint:
    """A model's sizes, as the estimate needs them."""

    n_layers: int
    d_model: int
    d_mlp: int
    vocab: int
    element: int  # bytes per activation
    weights: int  # bytes of the parameters

    @classmethod
    def of(cls, model: PreTrainedModel, n_layers: int, d_mlp: int) -> Footprint:
        from neuronmap.models.adapters import weight_of

        params = list(model.parameters())
        embeddings = weight_of(model.get_input_embeddings())
        return cls(
            n_layers=n_layers,
            d_model=int(embeddings.shape[1]),
            d_mlp=d_mlp,
            vocab=int(embeddings.shape[0]),
            element=params[0].element_size(),
            weights=sum(p.numel() * p.element_size() for p in params),
        )

    def per_token(self, coefficients: tuple[int, int]) -> int:
        return (coefficients[0] * self.d_model + coefficients[1] * self.d_mlp) * self.element

    def pass_bytes(self, rows: int, tokens: int, grad_layers: int = 0, logit_positions: int = 1) -> int:
        """Bytes a pass over ``rows`` inputs of ``tokens`` tokens takes beyond the weights: ``grad_layers`` blocks
        keep their tensors for a backward pass; the output layer runs at ``logit_positions`` per row."""
        working = rows * tokens * self.per_token(WORKING)
        saved = rows * tokens * grad_layers * self.per_token(SAVED)
        logits = rows * logit_positions * self.vocab * 4 * LOGIT_COPIES
        return FIXED + self.weights + working + saved + logits
