"""ROME's value v*: the output of the edited projection that makes the new target likely (and MEMIT's z: the
residual stream, a block's output, that does).

An added vector delta on the projection's output (``residual=True``: the block's output) at the subject's last
token, shared by every context prefix, is optimised with Adam for the new target's log-likelihood (mean over its
tokens, then over prompts), plus
``kl_factor`` x KL(p_edited || p_clean) of the next-token distribution at the subject's last token of the KL
prompts ("{} is a": keep what the subject *is*; the direction of ROME's ``compute_v`` and of its paper's eq. 4,
``kl_direction: "clean-edited"`` for the reverse), plus ROME's weight decay ``v_weight_decay`` x |delta| /
|v_init|^2; after each step |delta| is clamped to ``clamp_norm_factor`` x |v_init|, where v_init is the
projection's (or block's) clean output on the bare prompt.

Only layers after the edited one depend on delta: the blocks before it are replayed from a clean pass, and
logits are computed only where the loss reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from neuronmap.edit.algorithm.request import Request
from neuronmap.edit.hparams import EditHparams
from neuronmap.edit.prompts import encode_fact, opening_ids, pad
from neuronmap.edit.scoring import logits_at
from neuronmap.models.batching import pad as pad_ids
from neuronmap.models.loader import LoadedModel
from neuronmap.models.output_hooks import OutputHooks, block_name, replay_blocks
from neuronmap.progress import progress_bar


def kl_term(clean: torch.Tensor, edited: torch.Tensor, direction: str) -> torch.Tensor:
    """Mean over rows of KL(p_edited || p_clean) (``edited-clean``) or KL(p_clean || p_edited), from rows of
    log-probabilities."""
    p, q = (edited, clean) if direction == "edited-clean" else (clean, edited)
    return (p.exp() * (p - q)).sum(-1).mean()


@dataclass
class ValueResult:
    delta: torch.Tensor  # (d_model,) the optimised addition to the projection's (or block's) output
    v_init_norm: float
    losses: list[dict[str, float]] = field(default_factory=list)  # per step: nll, kl, decay, total, p_new
    v_init: torch.Tensor | None = None  # (d_model,) the clean output delta is added to, on the bare prompt

    @property
    def steps(self) -> int:
        return len(self.losses)


@dataclass
class _Rows:
    ids: torch.Tensor  # (B, T)
    mask: torch.Tensor  # (B, T)
    lookup: torch.Tensor  # (B,) subject's last token per row
    read: torch.Tensor  # (B, K) positions whose logits the loss reads
    target_ids: torch.Tensor  # (R, K) new-target tokens of the R rewriting rows
    target_mask: torch.Tensor  # (R, K)
    n_rewrite: int


def _rows(
    lm: LoadedModel,
    request: Request,
    prefixes: list[str],
    kl_prompts: tuple[str, ...],
    opening: Sequence[int] = (),
) -> _Rows:
    tok = lm.tokenizer
    rewrite = [
        encode_fact(tok, request.prompt, request.subject, request.target_new, p, opening) for p in prefixes
    ]
    kl = [encode_fact(tok, prompt, request.subject, None, "", opening) for prompt in kl_prompts]
    ids, mask = pad(rewrite + kl, tok.pad_token_id, lm.device)
    target_ids, target_mask = pad_ids([e.target_ids for e in rewrite], 0)
    read = torch.zeros((len(rewrite) + len(kl), target_ids.shape[1]), dtype=torch.long)
    for row, e in enumerate(rewrite):
        read[row] = e.position  # padding slots read a real position; the mask drops them
        read[row, : len(e.target_ids)] = torch.arange(e.position, e.position + len(e.target_ids))
    for row, e in enumerate(kl, start=len(rewrite)):
        read[row] = e.subject_last
    lookup = torch.tensor([e.subject_last for e in rewrite + kl])
    dev = lm.device
    return _Rows(
        ids, mask, lookup.to(dev), read.to(dev), target_ids.to(dev), target_mask.bool().to(dev), len(rewrite)
    )


def _logits(lm: LoadedModel, rows: _Rows) -> torch.Tensor:
    return logits_at(lm.model, rows.ids, rows.mask, rows.read)


def compute_value(
    lm: LoadedModel,
    layer: int,
    request: Request,
    prefixes: list[str],
    hparams: EditHparams,
    progress: bool = False,
    residual: bool = False,
) -> ValueResult:
    """Optimise delta (see the module docstring): added to the output projection's output (ROME), or with
    ``residual`` to the block's output (MEMIT's z). The model's weights are not touched."""
    rows = _rows(lm, request, prefixes, hparams.kl_prompts, opening_ids(lm.tokenizer, hparams.document_start))
    n_rows = rows.ids.shape[0]
    site = block_name(lm.adapter, layer) if residual else lm.adapter.names[layer]
    before = block_name(lm.adapter, layer - 1) if layer > 0 else None
    at_lookup = torch.zeros(rows.ids.shape, dtype=lm.dtype, device=lm.device)
    at_lookup[torch.arange(n_rows, device=lm.device), rows.lookup] = 1

    record = [site] + ([before] if before else [])
    with torch.no_grad(), OutputHooks(lm.model, record=record) as clean:
        logits = _logits(lm, rows)
    bare = prefixes.index("") if "" in prefixes else 0  # v_init is read on the bare prompt
    v_init = clean.outputs[site][bare, rows.lookup[bare]].clone()
    kl_init = logits[rows.n_rewrite :, 0].to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
    replayed = clean.outputs[before] if before else None

    delta = torch.zeros(v_init.shape[-1], dtype=lm.dtype, device=lm.device, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=hparams.v_lr)
    max_norm = hparams.clamp_norm_factor * float(v_init.norm())
    result = ValueResult(delta.detach(), float(v_init.norm()), v_init=v_init.detach())

    def add(out: torch.Tensor) -> torch.Tensor:
        return out + at_lookup[..., None] * delta

    with progress_bar("value v*", total=hparams.v_num_grad_steps, unit="step", enabled=progress) as bar:
        for step in range(hparams.v_num_grad_steps):
            with torch.enable_grad(), OutputHooks(lm.model, edits={site: add}):
                if replayed is not None:
                    with replay_blocks(lm.adapter, layer - 1, replayed):
                        logits = _logits(lm, rows)
                else:
                    logits = _logits(lm, rows)
                logp = logits.to(torch.promote_types(logits.dtype, torch.float32)).log_softmax(-1)
                rewrite = logp[: rows.n_rewrite]
                picked = rewrite.gather(-1, rows.target_ids[..., None]).squeeze(-1) * rows.target_mask
                per_row = picked.sum(1) / rows.target_mask.sum(1)
                nll = -per_row.mean()
                kl = kl_term(kl_init, logp[rows.n_rewrite :, 0], hparams.kl_direction)
                decay = hparams.v_weight_decay * delta.norm() / v_init.norm() ** 2
                loss = nll + hparams.kl_factor * kl + decay
            terms = {"nll": nll, "kl": kl, "decay": decay, "total": loss, "p_new": per_row.exp().mean()}
            result.losses.append({k: float(v.detach()) for k, v in terms.items()})
            bar.advance()
            if result.losses[-1]["total"] < hparams.early_stop_loss or step == hparams.v_num_grad_steps - 1:
                break
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            with torch.no_grad():
                norm = float(delta.norm())
                if norm > max_norm:
                    delta.mul_(max_norm / norm)
    result.delta = delta.detach().clone()
    return result
