"""Output-token weights: which tokens a neuron's output writes toward and away from, straight through the logits.

Neuron ``i`` of a layer writes ``a_i * W_out[:, i]`` into the residual stream. Its *direct* effect on the logits is
that vector through the final norm and the unembedding ``W_U`` (vocabulary x d_model). With the norm's
normalisation held fixed (the ``direct`` trace method's linearisation, ``trace.events``), the norm is a linear
map: an RMS norm multiplies by its gain ``g`` (Gemma's ``1 + weight``, read from the module itself as
``norm(ones) * sqrt(1 + eps)``); a LayerNorm centres the vector first, then multiplies by ``g``. So::

    weight[t] = (W_U (g * C W_out[:, i]))[t]        C = centring for LayerNorm, the identity for RMS norms

What it ignores: the norm's 1/rms (or 1/std), a positive factor of each position that scales all of a neuron's
weights alike and so changes no ranking; the norm's bias and the logit soft cap (Gemma 2), which do not depend on
the neuron; and every path through later layers (attention and MLPs reading the neuron's output). A neuron
whose work is done through later layers can have small or meaningless output-token weights.

``output_token_weights`` computes the top ``k`` promoted and suppressed tokens of each given neuron, a block of
neurons at a time (a block's logits are at most ``BLOCK_BYTES``), so that the 46,080 neurons of SmolLM2 fit in a
few hundred MB.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from torch import nn

from neuronmap.errors import NeuronmapError
from neuronmap.models.loader import LoadedModel
from neuronmap.trace.events import final_norm

BLOCK_BYTES = 64 << 20  # float32 logits of one block of neurons


def norm_map(norm: nn.Module) -> tuple[torch.Tensor, bool]:
    """(gain, centre) of the final norm as a linear map with its normalisation fixed: the per-coordinate gain
    (float32) and whether it centres its input first (LayerNorm)."""
    if isinstance(norm, nn.LayerNorm):
        d = norm.normalized_shape[-1]
        gain = _wide(norm.weight.detach()) if norm.weight is not None else torch.ones(d)
        return gain, True
    eps = float(getattr(norm, "variance_epsilon", getattr(norm, "eps", 1e-6)))
    weight = getattr(norm, "weight", None)
    if weight is None:
        raise NeuronmapError(f"the final norm {type(norm).__name__} has no weight to read its gain from")
    ones = torch.ones(weight.shape[-1], dtype=weight.dtype, device=weight.device)
    with torch.no_grad():
        gain = norm(ones)
    return _wide(gain.detach()) * (1 + eps) ** 0.5, False


def _wide(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (half-precision models); float64 kept (references)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def unembedding(lm: LoadedModel) -> torch.Tensor:
    head = lm.model.get_output_embeddings()
    if head is None or getattr(head, "weight", None) is None:
        raise NeuronmapError("the model has no output embedding (unembedding) to read token weights from")
    return head.weight  # (vocabulary, d_model)


def output_token_weights(
    lm: LoadedModel,
    layers: np.ndarray,
    neurons: np.ndarray,
    k: int = 10,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """The top ``k`` promoted (``sign`` +1, largest weight first) and suppressed (``sign`` -1, most negative
    first) tokens of each (layer, neuron): columns layer, neuron, token_id, token, weight, rank, sign."""
    if k < 1:
        raise NeuronmapError("--top-tokens must be at least 1")
    layers, neurons = np.asarray(layers, np.int64), np.asarray(neurons, np.int64)
    gain, centre = norm_map(final_norm(lm.model))
    w_u = unembedding(lm)
    vocab = w_u.shape[0]
    k = min(k, vocab)
    w_u = _wide(w_u)  # a copy only for half-precision models
    gain = gain.to(w_u.device, w_u.dtype)
    block = max(1, BLOCK_BYTES // (4 * vocab))
    out_layer, out_neuron, out_tok, out_w, out_rank, out_sign = [], [], [], [], [], []
    for layer in np.unique(layers):
        rows = np.flatnonzero(layers == layer)
        weights = lm.adapter.neuron_weights(int(layer))  # (d_mlp, d_model) view
        for start in range(0, len(rows), block):
            chunk = rows[start : start + block]
            idx = torch.as_tensor(neurons[chunk], device=weights.device)
            with torch.no_grad():
                direction = weights.index_select(0, idx).to(w_u.dtype)  # (b, d_model)
                if centre:
                    direction = direction - direction.mean(-1, keepdim=True)
                logits = (direction * gain) @ w_u.T  # (b, vocabulary)
                top = logits.topk(k, dim=1)
                bottom = logits.topk(k, dim=1, largest=False)
            for values, ids, sign in ((top.values, top.indices, 1), (bottom.values, bottom.indices, -1)):
                b = len(chunk)
                out_layer.append(np.repeat(layers[chunk], k))
                out_neuron.append(np.repeat(neurons[chunk], k))
                out_tok.append(ids.cpu().numpy().reshape(-1))
                out_w.append(values.cpu().numpy().reshape(-1))
                out_rank.append(np.tile(np.arange(k), b))
                out_sign.append(np.full(b * k, sign))
            if progress is not None:
                progress(len(chunk))
    if not out_layer:
        return _empty()
    token_id = np.concatenate(out_tok).astype(np.int64)
    decoded = {int(t): lm.tokenizer.decode([int(t)]) for t in np.unique(token_id)}
    table = pd.DataFrame(
        {
            "layer": np.concatenate(out_layer).astype(np.int32),
            "neuron": np.concatenate(out_neuron).astype(np.int32),
            "token_id": token_id,
            "token": [decoded[int(t)] for t in token_id],
            "weight": np.concatenate(out_w).astype(np.float32),
            "rank": np.concatenate(out_rank).astype(np.int32),
            "sign": np.concatenate(out_sign).astype(np.int8),
        }
    )
    table = table.sort_values(["layer", "neuron", "sign", "rank"], ascending=[True, True, False, True])
    return table.reset_index(drop=True)


def _empty() -> pd.DataFrame:
    columns = {"layer": np.int32, "neuron": np.int32, "token_id": np.int64, "token": object,
               "weight": np.float32, "rank": np.int32, "sign": np.int8}  # fmt: skip
    return pd.DataFrame({k: pd.Series(dtype=v) for k, v in columns.items()})
