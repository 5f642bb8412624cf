"""Neuron importance methods. Each scores every neuron of the chosen layers for each context of a batch.

Sign convention, shared by all methods: a positive score means the neuron supports the target (removing it, or
failing to restore it, lowers the target's log-probability or probability).

Scores come back as a dense float tensor (B, L, d_mlp), or (B, T, L, d_mlp) per position; neurons a method did
not score (outside its candidates) are NaN.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from neuronmap.errors import NeuronmapError
from neuronmap.models.adapters import weight_of
from neuronmap.models.hooks import NeuronHook
from neuronmap.models.loader import LoadedModel
from neuronmap.models.output_hooks import OutputHooks, block_name, replay_blocks
from neuronmap.trace.batch import (
    Batch,
    forward_logits,
    forward_picked_logits,
    forward_target_logits,
    picked_logprob,
    picked_top1,
    target_logprob,
)
from neuronmap.trace.config import IG_METRICS, IG_RULES


@dataclass
class MethodResult:
    scores: torch.Tensor  # (B, L, d) or (B, T, L, d); NaN where not scored
    logprob: torch.Tensor  # (B,) clean metric
    correct: torch.Tensor  # (B,) every target token is top-1
    attribution: torch.Tensor | None = None  # the candidates' attribution, for ablation and causal
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # per-context values (e.g. p_corrupted)


def _position_mask(batch: Batch, positions: str) -> torch.Tensor:
    """(B, T) float mask of the positions a score is taken at."""
    if positions == "all":
        return batch.attention_mask.float()
    mask = torch.zeros_like(batch.attention_mask, dtype=torch.float)
    mask[torch.arange(len(batch)), batch.position] = 1.0
    return mask


def _reduce(per_position: torch.Tensor, mask: torch.Tensor, keep_positions: bool) -> torch.Tensor:
    """(B, T, d) scores -> (B, d) summed over the masked positions, or masked (B, T, d)."""
    masked = per_position * mask[..., None]
    return masked if keep_positions else masked.sum(1)


def attribution(
    lm: LoadedModel,
    batch: Batch,
    layers: list[int],
    positions: str = "target",
    per_position: bool = False,
    keep_acts: bool = False,
) -> MethodResult:
    """Activation x gradient (attribution patching): one forward and one backward pass per batch."""
    with torch.enable_grad(), NeuronHook(lm.adapter, layers, grad=True) as hook:
        logits = forward_target_logits(lm.model, batch)
        logprob = picked_logprob(logits, batch)
        acts = [hook.acts[layer] for layer in layers]
        grads = torch.autograd.grad(logprob.sum(), acts)
    mask = _position_mask(batch, positions)
    scores = torch.stack(
        [_reduce((a.detach() * g).float(), mask, per_position) for a, g in zip(acts, grads, strict=True)],
        dim=-2,
    )
    result = MethodResult(scores, logprob.detach(), picked_top1(logits.detach(), batch))
    if keep_acts:
        result.extra["acts"] = torch.stack([a.detach() for a in acts], dim=2)  # (B, T, L, d)
        result.extra["grads"] = torch.stack(grads, dim=2)
    return result


def ig_alphas(steps: int, rule: str = "midpoint") -> torch.Tensor:
    """(steps,) the points of the path integral, each of weight 1/steps: ``midpoint`` (k + 1/2)/steps, ``right``
    (k + 1)/steps (right Riemann sum), ``linspace`` linspace(0, 1, steps) (knowledge-neurons' points)."""
    k = torch.arange(steps, dtype=torch.float64)
    if rule == "midpoint":
        return (k + 0.5) / steps
    if rule == "right":
        return (k + 1) / steps
    if rule == "linspace":
        return torch.linspace(0, 1, steps, dtype=torch.float64)
    raise NeuronmapError(f"unknown integration rule '{rule}'; choose one of {', '.join(IG_RULES)}")


def integrated_gradients(
    lm: LoadedModel,
    batch: Batch,
    layers: list[int],
    steps: int = 20,
    positions: str = "target",
    per_position: bool = False,
    metric: str = "logprob",
    rule: str = "midpoint",
    fast: bool = True,
) -> MethodResult:
    """Dai et al.'s knowledge-neuron attribution: one layer's neurons scaled from 0 to their value, the others clean.

    ``metric`` is the target's log-probability (default) or its probability (Dai et al., knowledge-neurons);
    ``rule`` places the ``steps`` points of the path integral (:func:`ig_alphas`; the default midpoint rule is
    more accurate than a right Riemann sum at the same cost). All steps of a layer run as one batch of
    ``len(batch) * steps`` rows.

    ``fast`` (same scores within float tolerance): the blocks below layer ``l`` see the same input at every
    step, so they run once, in the clean pass, whose block outputs are then replayed (``replay_blocks``) while
    layer ``l`` is scored; and the output layer runs only at each row's own target positions.
    """
    if steps < 1:
        raise NeuronmapError("--steps must be at least 1")
    if metric not in IG_METRICS:
        raise NeuronmapError(f"unknown IG metric '{metric}'; choose one of {', '.join(IG_METRICS)}")
    alphas = ig_alphas(steps, rule).to(batch.input_ids.device).repeat(len(batch)).to(lm.dtype)
    replayed = {layer: block_name(lm.adapter, layer - 1) for layer in layers if fast and layer > 0}
    with torch.no_grad(), OutputHooks(lm.model, record=list(dict.fromkeys(replayed.values()))) as clean:
        logits = forward_target_logits(lm.model, batch)
    logprob, correct = picked_logprob(logits, batch), picked_top1(logits, batch)
    rows = batch.repeat(steps)
    mask = _position_mask(rows, positions).to(lm.dtype)
    forward = forward_picked_logits if fast else forward_target_logits
    per_layer = []
    for layer in layers:
        holder: dict[str, torch.Tensor] = {}

        def scale(_layer: int, x: torch.Tensor, holder: dict[str, torch.Tensor] = holder) -> torch.Tensor:
            # A leaf at alpha * a: the gradient with respect to it is the integrand at that alpha.
            m = mask[..., None]
            point = (x.detach() * (1 - m) + alphas[:, None, None] * x.detach() * m).requires_grad_(True)
            holder["point"], holder["clean"] = point, x.detach()
            return point

        with contextlib.ExitStack() as stack:
            if layer in replayed:
                below = clean.outputs[replayed[layer]].repeat_interleave(steps, dim=0)
                stack.enter_context(replay_blocks(lm.adapter, layer - 1, below))
            stack.enter_context(torch.enable_grad())
            stack.enter_context(NeuronHook(lm.adapter, [layer], capture=False, edit=scale))
            value = picked_logprob(forward(lm.model, rows), rows)
            if metric == "prob":
                value = value.exp()
            (grad,) = torch.autograd.grad(value.sum(), holder["point"])
        integrand = (holder["clean"] * grad).float().view(len(batch), steps, *grad.shape[1:]).mean(1)
        per_layer.append(_reduce(integrand, _position_mask(batch, positions), per_position))
    return MethodResult(torch.stack(per_layer, dim=-2), logprob, correct)


def pick_candidates(attr: torch.Tensor, candidates: int) -> list[torch.Tensor]:
    """Per context, the flat (layer-slot * d + neuron) indices to score exactly: all when affordable, else the top
    ``candidates`` by |attribution|."""
    flat = attr.reshape(attr.shape[0], -1)
    if flat.shape[1] <= candidates:
        return [torch.arange(flat.shape[1], device=attr.device) for _ in range(flat.shape[0])]
    return list(flat.abs().topk(candidates, dim=1).indices)


def _neuron_edit(
    layers: list[int],
    d_mlp: int,
    flat: torch.Tensor,
    positions: torch.Tensor,
    value: Callable[[int, torch.Tensor], torch.Tensor],
    first_row: int = 1,
) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """An edit giving row ``first_row + j`` its own neuron ``flat[j]`` (a flat layer-slot * d + neuron index), set
    to ``value(layer, neurons)`` ((n, P) for the P positions of the (T,) bool mask ``positions``); rows before
    ``first_row`` stay clean. One edited neuron per row lets a single forward pass measure many neurons."""
    slot, neuron = flat // d_mlp, flat % d_mlp
    rows = torch.arange(len(flat), device=flat.device) + first_row
    pos = positions.nonzero().squeeze(-1)

    def edit(layer: int, x: torch.Tensor) -> torch.Tensor:
        sel = slot == layers.index(layer)
        if not bool(sel.any()):
            return x
        x = x.clone()
        x[rows[sel][:, None], pos[None, :], neuron[sel][:, None]] = value(layer, neuron[sel]).to(x.dtype)
        return x

    return edit


def ablation(
    lm: LoadedModel,
    batch: Batch,
    layers: list[int],
    positions: str = "target",
    candidates: int = 256,
    chunk: int = 64,
    mean_acts: torch.Tensor | None = None,
) -> MethodResult:
    """The exact change of the metric when one neuron is set to zero (or to its reference mean), one copy of the
    context per neuron. Exhaustive when the layers hold at most ``candidates`` neurons, else the top
    ``candidates`` by |attribution| (kept in ``attribution`` so both are reported)."""
    clean = attribution(lm, batch, layers, positions)
    d = lm.d_mlp
    scores = torch.full_like(clean.scores, float("nan"))
    for b, flat in enumerate(pick_candidates(clean.scores, candidates)):
        single = _single(batch, b)
        where = _position_mask(single, positions)[0].bool()

        def value(layer: int, neurons: torch.Tensor, n_pos: int = int(where.sum())) -> torch.Tensor:
            if mean_acts is None:
                return torch.zeros((len(neurons), n_pos), device=neurons.device)
            return mean_acts[layers.index(layer), neurons][:, None].expand(-1, n_pos)

        for part in flat.split(chunk):
            rows = single.repeat(len(part) + 1)
            edit = _neuron_edit(layers, d, part, where, value)
            with torch.no_grad(), NeuronHook(lm.adapter, layers, capture=False, edit=edit):
                lp = target_logprob(forward_logits(lm.model, rows), rows)
            scores[b].view(-1)[part] = (lp[0] - lp[1:]).float()
    return MethodResult(scores, clean.logprob, clean.correct, attribution=clean.scores)


def _single(batch: Batch, b: int) -> Batch:
    """Row ``b`` alone, without its padding."""
    n = int(batch.attention_mask[b].sum())
    k = int(batch.target_mask[b].sum())
    return Batch(
        batch.input_ids[b : b + 1, :n],
        batch.attention_mask[b : b + 1, :n],
        batch.position[b : b + 1],
        batch.target_ids[b : b + 1, :k],
        batch.target_pos[b : b + 1, :k],
        batch.target_mask[b : b + 1, :k],
        [batch.encoded[b]],
    )


def noise_generator(seed: int, key: str) -> torch.Generator:
    """A CPU generator seeded by (seed, key), so noise depends on the context, not on batching or resumption."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def embedding_noise(
    lm: LoadedModel, n_tokens: int, samples: int, scale: float, gen: torch.Generator
) -> torch.Tensor:
    """(samples, n_tokens, d_model) Gaussian noise, ``scale`` times the std of the token-embedding matrix."""
    weight = weight_of(lm.adapter.input_embeddings())
    std = float(weight.float().std())
    noise = torch.randn((samples, n_tokens, weight.shape[1]), generator=gen) * (scale * std)
    return noise.to(device=weight.device, dtype=weight.dtype)


def corrupted_logprob(
    lm: LoadedModel,
    rows: Batch,
    span: tuple[int, int],
    noise: torch.Tensor,
    edit: Callable[[int, torch.Tensor], torch.Tensor] | None,
    layers: list[int],
) -> torch.Tensor:
    """Log-probability of the target with noise added to the subject's embeddings (row r gets noise[r % S]) and
    an optional neuron edit (restoration) applied."""
    s = noise.shape[0]
    picked = noise[torch.arange(len(rows), device=noise.device) % s]

    def corrupt(module: torch.nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, span[0] : span[1]] += picked
        return out

    handle = lm.adapter.input_embeddings().register_forward_hook(corrupt)
    try:
        with torch.no_grad(), NeuronHook(lm.adapter, layers, capture=False, edit=edit):
            return target_logprob(forward_logits(lm.model, rows), rows)
    finally:
        handle.remove()


def causal(
    lm: LoadedModel,
    batch: Batch,
    layers: list[int],
    keys: list[str],
    restore: str = "subject",
    samples: int = 10,
    noise: float = 3.0,
    candidates: int = 256,
    chunk: int = 64,
    seed: int = 0,
) -> MethodResult:
    """ROME-style causal tracing at neuron level. The subject's embeddings get Gaussian noise (``samples`` seeded
    draws); restoring one neuron's clean activation (at the last subject token, or at every position) scores the
    probability it recovers: mean p(target | noised, neuron restored) - mean p(target | noised).

    ``keys`` (one per row, e.g. the context id) seed the noise of each context.
    """
    if samples < 1:
        raise NeuronmapError("--samples must be at least 1")
    clean = attribution(lm, batch, layers, positions="all", per_position=True, keep_acts=True)
    acts = clean.extra.pop("acts")  # (B, T, L, d)
    d = lm.d_mlp
    scores = torch.full((len(batch), len(layers), d), float("nan"), device=acts.device)
    cand_attr = torch.zeros_like(scores)
    p_corrupt = torch.zeros(len(batch), device=acts.device)
    for b, enc in enumerate(batch.encoded):
        if enc.subject_span is None:
            raise NeuronmapError("the causal method needs a subject for every context (field 'subject')")
        single = _single(batch, b)
        t = single.input_ids.shape[1]
        where = torch.zeros(t, dtype=torch.bool, device=acts.device)
        if restore == "all":
            where[:] = True
        else:
            where[enc.subject_last] = True
        cand_attr[b] = clean.scores[b, :t][where].sum(0)
        span = enc.subject_span
        draws = embedding_noise(lm, span[1] - span[0], samples, noise, noise_generator(seed, keys[b]))
        base = corrupted_logprob(lm, single.repeat(samples), span, draws, None, layers).exp().mean()
        p_corrupt[b] = base
        clean_acts = acts[b, :t]  # (T, L, d)

        def value(
            layer: int, neurons: torch.Tensor, restored: torch.Tensor = clean_acts[where]
        ) -> torch.Tensor:
            return restored[:, layers.index(layer), neurons].T  # (n, P)

        for part in pick_candidates(cand_attr[b : b + 1], candidates)[0].split(max(1, chunk // samples)):
            rows = single.repeat(len(part) * samples)
            edit = _neuron_edit(layers, d, part.repeat_interleave(samples), where, value, first_row=0)
            p = corrupted_logprob(lm, rows, span, draws, edit, layers).exp().view(len(part), samples).mean(1)
            scores[b].view(-1)[part] = (p - base).float()
    return MethodResult(
        scores, clean.logprob, clean.correct, attribution=cand_attr, extra={"p_corrupted": p_corrupt}
    )
