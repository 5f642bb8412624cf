"""Each-token traces: every token of a document predicts the next, and each prediction is one *event*.

A document's token at position p (from ``min_prefix - 1`` on, so at least ``min_prefix`` tokens are seen) predicts
the token at p + 1. One pass over a document scores all of its events at once:

- ``direct`` (forward only): a_i * <W_out[:, i], d log p(target) / d r_final> at the event's position, where
  r_final is the input of the final norm and the norm's scale (1/rms, or 1/std) is held at its clean value, a
  constant of the derivative. The neuron's output written straight to the logits; what it does through later
  layers (their attention and MLPs reading it) is not counted.
- ``attribution``: a_i * d(sum of log p(target) over the window's events) / d a_i at the event's position: one
  forward and one backward pass per document. The neuron's first-order share of the document's loss at that
  position, which includes its effect on later events, not on its own target alone.
- ``activation``: a_i itself (Neuroscope's view).

A document longer than the model's window is cut into windows of the window's length that overlap by a quarter
of it; each event is scored in the earliest window that holds its target, so it is scored once and, beyond the
first window, sees at least the overlap as prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from neuronmap.errors import NeuronmapError
from neuronmap.models.batching import pad
from neuronmap.models.hooks import NeuronHook
from neuronmap.models.loader import LoadedModel
from neuronmap.models.memory import Footprint
from neuronmap.trace.config import EACH_TOKEN_METHODS

OVERLAP_SHARE = 4  # windows of a long document overlap by 1/4 of the window
# The final norm, by the module names of the supported families (Llama/Gemma, GPT-2, GPT-NeoX).
_FINAL_NORMS = ("model.norm", "transformer.ln_f", "gpt_neox.final_layer_norm", "model.language_model.norm")


@dataclass(frozen=True)
class Window:
    """A slice of a document's tokens scored in one pass, and the document positions of the events it scores."""

    doc_id: int
    start: int  # document position of the window's first token
    first: int  # first event position scored here (position p predicts token p + 1)
    stop: int  # one past the last
    input_ids: tuple[int, ...]

    def local(self) -> range:
        """The events' positions within the window."""
        return range(self.first - self.start, self.stop - self.start)


def document_windows(
    doc_id: int, token_ids: Sequence[int], window: int | None, min_prefix: int
) -> list[Window]:
    """The windows that score every event of a document once (none when it has fewer than ``min_prefix`` + 1
    tokens)."""
    n = len(token_ids)
    first, last = max(min_prefix - 1, 0), n - 1  # events at first..last-1
    if first >= last:
        return []
    if window is None or n <= window:
        return [Window(doc_id, 0, first, last, tuple(token_ids))]
    step = window - window // OVERLAP_SHARE
    out, start = [], 0
    while first < last:
        stop = min(last, start + window - 1)  # the target of event p is token p + 1, inside the window
        if stop > first:
            out.append(Window(doc_id, start, first, stop, tuple(token_ids[start : start + window])))
            first = stop
        start += step
    return out


def final_norm(model: nn.Module) -> nn.Module:
    modules = dict(model.named_modules())
    for name in _FINAL_NORMS:
        if name in modules:
            return modules[name]
    raise NeuronmapError(
        "the direct method needs the model's final norm, which this architecture does not name"
    )


def norm_backward(norm: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """d/dx of <grad, norm(x)> with the norm's scale held at its value for ``x``: LayerNorm is then
    diag(weight)/std composed with centring; an RMS norm diag(gain)/rms, with its gain read from the module itself
    (gain = norm(ones) x sqrt(1 + eps), which covers Gemma's 1 + weight)."""
    if isinstance(norm, nn.LayerNorm):
        std = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + norm.eps)
        scaled = grad * (norm.weight if norm.weight is not None else 1.0) / std
        return scaled - scaled.mean(-1, keepdim=True)
    eps = float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6)))
    ones = torch.ones(x.shape[-1], dtype=x.dtype, device=x.device)
    gain = norm(ones) * (1 + eps) ** 0.5
    rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return grad * gain / rms


def _wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (half-precision models), float64 kept (references)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


@dataclass
class EventScores:
    """Per event of a batch of windows: (window row, local position) and its scores (E, L, d)."""

    rows: torch.Tensor  # (E,)
    positions: torch.Tensor  # (E,) within the window
    targets: torch.Tensor  # (E,)
    logprob: torch.Tensor  # (E,)
    known: torch.Tensor  # (E,) the target is the model's top-1
    scores: torch.Tensor  # (E, L, d)


def score_windows(lm: LoadedModel, windows: Sequence[Window], layers: list[int], method: str) -> EventScores:
    """Score every event of ``windows`` (one batch) with ``method`` (see the module docstring)."""
    if method not in EACH_TOKEN_METHODS:
        raise NeuronmapError(f"--each-token takes --method {', '.join(EACH_TOKEN_METHODS)}, got {method!r}")
    ids, mask = pad([w.input_ids for w in windows], lm.tokenizer.pad_token_id or 0, lm.device)
    rows = torch.tensor([b for b, w in enumerate(windows) for _ in w.local()], device=lm.device)
    positions = torch.tensor([p for w in windows for p in w.local()], device=lm.device)
    targets = ids[rows, positions + 1]
    captured: dict[str, torch.Tensor] = {}
    norm = final_norm(lm.model) if method == "direct" else None

    def keep_input(module: nn.Module, args: tuple) -> None:
        captured["x"] = args[0]

    grad = method == "attribution"
    handle = norm.register_forward_pre_hook(keep_input) if norm is not None else None
    try:
        with torch.set_grad_enabled(grad), NeuronHook(lm.adapter, layers, grad=grad) as hook:
            logits = lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits
            picked = _wide(logits[rows, positions])  # (E, V): the events' positions only
            event_logp = picked.log_softmax(-1)[torch.arange(len(targets), device=targets.device), targets]
            if grad:
                grads = torch.autograd.grad(event_logp.sum(), [hook.acts[layer] for layer in layers])
    finally:
        if handle is not None:
            handle.remove()
    acts = torch.stack([hook.acts[layer].detach()[rows, positions] for layer in layers], dim=1)  # (E, L, d)
    if method == "activation":
        scores = _wide(acts)
    elif method == "attribution":
        scores = _wide(acts) * _wide(torch.stack([g[rows, positions] for g in grads], dim=1))
    else:
        assert norm is not None  # direct: its input was captured above
        scores = _wide(acts) * _direct_gradient(
            lm, norm, captured["x"][rows, positions], picked, targets, layers
        )
    known = picked.detach().argmax(-1) == targets
    return EventScores(rows, positions, targets, event_logp.detach(), known, scores)


def _direct_gradient(
    lm: LoadedModel,
    norm: nn.Module,
    x: torch.Tensor,
    picked: torch.Tensor,
    targets: torch.Tensor,
    layers: list[int],
) -> torch.Tensor:
    """(E, L, d) <W_out[:, i], d log p(target) / d r_final> for each event and neuron; ``x`` and ``picked`` are
    the final norm's input and the logits at the events' positions."""
    head = lm.model.get_output_embeddings()
    picked = picked.detach()
    softcap = getattr(lm.model.config, "final_logit_softcapping", None)
    # d log p / d logits = onehot(target) - softmax; through a soft cap c * tanh(z / c), times 1 - tanh^2
    d_logits = -picked.softmax(-1)
    d_logits[torch.arange(len(targets)), targets] += 1
    if softcap:
        d_logits = d_logits * (1 - (picked / softcap).pow(2))
    d_y = (
        d_logits.to(head.weight.dtype) @ head.weight
    )  # (E, d_model): the head is linear in the norm's output
    d_r = norm_backward(norm, x.detach(), d_y)
    return _wide(torch.stack([d_r @ lm.adapter.neuron_weights(layer).T for layer in layers], dim=1))


def event_bytes(fp: Footprint, method: str, layers: list[int], rows: int, tokens: int) -> int:
    """Estimated peak bytes of scoring ``rows`` windows of ``tokens`` tokens: one pass with logits at every
    position (the events' log-probabilities), the captured neurons of each traced layer and the events' scores,
    and for attribution the backward pass down to the lowest traced layer."""
    grad_layers = fp.n_layers - min(layers) if method == "attribution" else 0
    per_event = rows * tokens * len(layers) * (fp.d_mlp * 4 * 3 + fp.d_model * 4)
    return fp.pass_bytes(rows, tokens, grad_layers, tokens) + per_event


def top_events(scores: torch.Tensor, top_k: int | None, threshold: float | None) -> tuple[np.ndarray, ...]:
    """(event, layer slot, neuron, score) of each event's kept scores: the top ``top_k`` by |score|, ties by index
    (the rule of ``runner._top_scores``), and/or |score| >= ``threshold``; in that order within an event."""
    flat = scores.reshape(scores.shape[0], -1)
    if not torch.isfinite(flat).all():
        raise NeuronmapError("non-finite scores (the model's outputs overflow in this dtype?)")
    magnitude = flat.abs()
    if top_k is None or top_k >= flat.shape[1]:
        chosen = torch.ones_like(magnitude, dtype=torch.bool)
    else:
        # A selection in linear time (a full sort of every event's tens of thousands of scores would cost more
        # than scoring them): everything above the k-th value, then the lowest indices among its equals.
        kth = magnitude.topk(top_k, dim=1).values[:, -1:]
        above = magnitude > kth
        tied = magnitude == kth
        room = top_k - above.sum(1, keepdim=True)
        chosen = above | (tied & (tied.cumsum(1) <= room))
    if threshold is not None:
        chosen &= magnitude >= threshold
    event, index = chosen.nonzero(as_tuple=True)  # row-major: by event, then by index
    values = flat[event, index]
    # within an event: by |score| descending, ties by index (a stable sort of the index-ordered rows)
    order = np.lexsort((-values.abs().numpy(), event.numpy()))
    event, index, values = event[order], index[order], values[order]
    d = scores.shape[-1]
    return event.numpy(), (index // d).numpy(), (index % d).numpy(), values.numpy()


def event_frames(
    lm: LoadedModel,
    windows: Sequence[Window],
    result: EventScores,
    layers: list[int],
    first_id: int,
    top_k: int | None,
    threshold: float | None,
    groups: dict[int, dict[str, object]],
    spans: dict[int, np.ndarray],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The events (rows of contexts.parquet, ids from ``first_id``) and their kept scores. ``spans`` holds each
    document's (start, end) characters per token: an event keeps its target's, so a page can mark it in the
    document's text without a tokenizer."""
    n = len(result.rows)
    rows, positions = result.rows.cpu().numpy(), result.positions.cpu().numpy()
    targets = result.targets.cpu().numpy()
    doc = np.array([windows[r].doc_id for r in rows], dtype=np.int64)
    start = np.array([windows[r].start for r in rows], dtype=np.int64)
    decoded = {int(t): lm.tokenizer.decode([int(t)]) for t in set(targets.tolist())}
    position = (start + positions).astype(np.int64)
    target_span = (
        np.stack([spans[d][p + 1] for d, p in zip(doc, position, strict=True)]) if n else np.zeros((0, 2))
    )
    events = pd.DataFrame(
        {
            "context_id": np.arange(first_id, first_id + n, dtype=np.int64),
            "doc_id": doc,
            "position": position,
            "target": [decoded[int(t)] for t in targets],
            "target_ids": [[int(t)] for t in targets],
            "target_tokens": [[decoded[int(t)]] for t in targets],
            "char_start": target_span[:, 0].astype(np.int64),
            "char_end": target_span[:, 1].astype(np.int64),
            "p_target": result.logprob.double().exp().cpu().numpy(),
            "known": result.known.cpu().numpy(),
            "kept": np.ones(n, dtype=bool),
        }
    )
    for key in sorted({k for g in groups.values() for k in g}):
        events[key] = [groups[d].get(key) for d in doc]
    event, slot, neuron, score = top_events(result.scores.cpu(), top_k, threshold)
    scores = pd.DataFrame(
        {
            "context_id": (first_id + event).astype(np.int64),
            "layer": np.asarray(layers, dtype=np.int32)[slot],
            "neuron": neuron.astype(np.int32),
            "score": score.astype(np.float32),
        }
    )
    return events, scores
