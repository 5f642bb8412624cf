"""ROME's key k*: the layer's neurons (the input of its MLP output projection) at the subject's last token,
averaged over the context prefixes."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from neuronmap.edit.algorithm.request import Request
from neuronmap.edit.prompts import encode_fact, pad
from neuronmap.models.hooks import NeuronHook
from neuronmap.models.loader import LoadedModel
from neuronmap.models.output_hooks import stop_after


def prefix_keys(
    lm: LoadedModel, layer: int, request: Request, prefixes: list[str], opening: Sequence[int] = ()
) -> torch.Tensor:
    """(len(prefixes), d_mlp) neurons at the last subject token of each prefixed prompt, in float64."""
    encoded = [encode_fact(lm.tokenizer, request.prompt, request.subject, None, p, opening) for p in prefixes]
    ids, mask = pad(encoded, lm.tokenizer.pad_token_id, lm.device)
    last = torch.tensor([e.subject_last for e in encoded], device=lm.device)
    with (
        torch.no_grad(),
        NeuronHook(lm.adapter, [layer], positions=last) as hook,
        stop_after(lm.model, lm.adapter.names[layer]),
    ):
        lm.model(input_ids=ids, attention_mask=mask, use_cache=False)
    return hook.acts[layer].to(torch.float64)


def compute_key(
    lm: LoadedModel, layer: int, request: Request, prefixes: list[str], opening: Sequence[int] = ()
) -> torch.Tensor:
    """(d_mlp,) k*: the mean over prefixes."""
    return prefix_keys(lm, layer, request, prefixes, opening).mean(0)
