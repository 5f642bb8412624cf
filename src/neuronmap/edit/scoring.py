"""Probabilities of targets after prompts, with the vocabulary projection computed only where it is read."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from neuronmap.edit.prompts import with_opening
from neuronmap.models.loader import LoadedModel
from neuronmap.trace.batch import collate, encode


def logits_at(
    model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, read: torch.Tensor
) -> torch.Tensor:
    """(B, K, V) logits at positions ``read`` (B, K): transformers' ``logits_to_keep`` where the model class
    takes a tensor, else the full logits gathered."""
    out = model(
        input_ids=input_ids, attention_mask=attention_mask, use_cache=False, logits_to_keep=read
    ).logits
    if out.shape[:2] == read.shape:
        return out
    return out.gather(1, read[..., None].expand(-1, -1, out.shape[-1]))


def mean_logprobs(
    lm: LoadedModel,
    prompts: Sequence[str],
    targets: Sequence[str],
    batch_size: int = 32,
    opening: Sequence[int] = (),
) -> torch.Tensor:
    """(N,) mean log-probability per target token of each (prompt, target), as CounterFact compares them.

    Targets follow the leading-space rule of ``trace.batch`` (" Paris" after "...city of"); ``opening`` token
    ids go before every prompt."""
    encoded = [
        with_opening(encode(lm.tokenizer, p, t), opening) for p, t in zip(prompts, targets, strict=True)
    ]
    out = []
    for start in range(0, len(encoded), batch_size):
        batch = collate(encoded[start : start + batch_size], lm.tokenizer.pad_token_id, lm.device)
        with torch.no_grad():
            logits = logits_at(lm.model, batch.input_ids, batch.attention_mask, batch.target_pos)
        lp = (
            logits.to(torch.promote_types(logits.dtype, torch.float32))
            .log_softmax(-1)
            .gather(-1, batch.target_ids[..., None])
            .squeeze(-1)
        )
        out.append(((lp * batch.target_mask).sum(-1) / batch.target_mask.sum(-1)).cpu())
    return torch.cat(out) if out else torch.zeros(0)
