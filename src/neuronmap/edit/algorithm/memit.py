"""MEMIT (Meng et al. 2023, "Mass-Editing Memory in a Transformer"): many facts written at once into the MLP
output projections of a range of layers, where ROME writes one fact into one layer.

1. **Targets z** (one per request): the residual stream at the subject's last token after the range's last layer
   that makes the new target likely, z = h + delta, delta optimised as ROME's value is, but added to the block's
   output instead of the projection's (``values.compute_value(residual=True)``); clamped to
   ``clamp_norm_factor`` x |h|.
2. **Layer by layer**, in increasing order, each on the model with the earlier layers' updates applied: the keys
   K (d_mlp x N), each request's neurons at its subject's last token averaged per kind of context (the bare
   prompt; each ``[length, count]`` of prefixes) and then over the kinds, as MEMIT's code averages them; the
   residual R = (Z - H) / (layers left, this one counted), H the current residual stream at the last layer on
   the bare prompts; and the update Delta = R K^T (lambda C + K K^T)^-1 (the paper's eq. 14, in float64), with C
   = E[k k^T] of the unedited layer (identity without ``mom2_adjustment``) and lambda ``mom2_update_weight``.

Each layer's update is applied while the next is computed, then all are undone: ``memit(...)`` changes no weight,
``memit(...).apply()`` writes them all.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from neuronmap.edit.algorithm.context import context_prefixes
from neuronmap.edit.algorithm.edit import Edit
from neuronmap.edit.algorithm.keys import prefix_keys
from neuronmap.edit.algorithm.memit_edit import MemitEdit
from neuronmap.edit.algorithm.request import Request
from neuronmap.edit.algorithm.values import ValueResult, compute_value
from neuronmap.edit.hparams import MemitHparams, load_memit_hparams
from neuronmap.edit.prompts import encode_fact, opening_ids, pad
from neuronmap.edit.stats import SecondMoment, hparams_moments
from neuronmap.edit.window import check_request
from neuronmap.errors import NeuronmapError
from neuronmap.models.loader import LoadedModel
from neuronmap.models.output_hooks import OutputHooks, block_name, stop_after
from neuronmap.models.registry import cache_root
from neuronmap.progress import progress_bar
from neuronmap.rundir import atomic_write_bytes, json_text


def memit_left(keys: torch.Tensor, mom2: torch.Tensor, weight: float) -> torch.Tensor:
    """(d_mlp, N) A = (weight C + K K^T)^-1 K for keys K (d_mlp x N, given as N rows), in float64: the update
    R K^T (weight C + K K^T)^-1 of the (d_model, d_mlp) weight is R A^T (C and the solve are symmetric)."""
    k = keys.to(torch.float64).T
    return torch.linalg.solve(weight * mom2.to(torch.float64) + k @ k.T, k)


def context_groups(n_prefixes: int, hparams: MemitHparams) -> list[list[int]]:
    """Rows of the prefixes (the bare prompt ``""`` first) per kind of context, as MEMIT averages its keys: the
    bare prompt, then each ``[length, count]`` of the hparams (all generated prefixes as one kind when their
    number is not the hparams')."""
    counts = [count for _, count in hparams.context_template_length_params]
    if sum(counts) != n_prefixes - 1:
        counts = [n_prefixes - 1]
    groups, start = [[0]], 1
    for count in counts:
        groups.append(list(range(start, start + count)))
        start += count
    return [g for g in groups if g]


def mean_key(keys: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    """(d_mlp,) the mean over kinds of context of each kind's mean key."""
    return torch.stack([keys[g].mean(0) for g in groups]).mean(0)


def subject_states(
    lm: LoadedModel,
    layer: int,
    requests: Sequence[Request],
    opening: Sequence[int] = (),
    batch_size: int = 32,
) -> torch.Tensor:
    """(N, d_model) float64: block ``layer``'s output (the residual stream) at each request's subject's last token
    on its bare prompt."""
    block = block_name(lm.adapter, layer)
    out = []
    for start in range(0, len(requests), batch_size):
        chunk = requests[start : start + batch_size]
        encoded = [encode_fact(lm.tokenizer, r.prompt, r.subject, None, "", opening) for r in chunk]
        ids, mask = pad(encoded, lm.tokenizer.pad_token_id, lm.device)
        rows = torch.arange(len(encoded), device=lm.device)
        last = torch.tensor([e.subject_last for e in encoded], device=lm.device)
        with torch.no_grad(), OutputHooks(lm.model, record=[block]) as hook, stop_after(lm.model, block):
            lm.model(input_ids=ids, attention_mask=mask, use_cache=False)
        out.append(hook.outputs[block][rows, last].to(torch.float64).cpu())
    return torch.cat(out)


def memit(
    lm: LoadedModel,
    requests: Sequence[Request | dict[str, Any]],
    hparams: MemitHparams | str | Path | None = None,
    *,
    layers: Sequence[int] | None = None,
    stats: dict[int, SecondMoment] | None = None,
    prefixes: list[str] | None = None,
    progress: bool = False,
    keep: Path | None = None,
    advance: Callable[[], object] | None = None,
) -> MemitEdit:
    """Compute (not apply) the MEMIT edit writing all ``requests`` at once: ``memit(...).apply()`` rewrites them.

    ``hparams`` defaults to the model family's file in ``hparams/memit/``; ``layers`` overrides its range.
    ``stats`` (E[k k^T] per layer) and ``prefixes`` are computed (and cached) when not given. Bad requests raise
    ``NeuronmapError`` before anything is computed; the model's weights are the same on return. ``keep``: a
    folder where each request's target search (most of the cost) is kept as it is done, named by all it depends
    on (``z_key``), so that a stopped mass edit searches only the targets not yet found, and a later edit that
    shares requests, the last layer and the search settings (a lambda or layer-range sweep, a larger batch of
    the same records) reuses them.
    ``advance``: called after each target search (a caller's own progress bar).
    """
    start = time.perf_counter()
    reqs = [(r if isinstance(r, Request) else Request.from_dict(r)).validate() for r in requests]
    if not reqs:
        raise NeuronmapError("MEMIT needs at least one request")
    hp = hparams if isinstance(hparams, MemitHparams) else load_memit_hparams(hparams, model=lm.spec)
    if layers is not None:
        hp = hp.replace(layers=tuple(layers))
    chosen = [lm.adapter.check_layer(layer) for layer in hp.resolve_layers(lm.n_layers)]
    for req in reqs:
        check_request(lm, hp, req, f"the request for {req.subject!r}")
    stats = _statistics(lm, hp, chosen, stats, progress) if hp.mom2_adjustment else None  # None: C = I
    prefixes = context_prefixes(lm, hp) if prefixes is None else prefixes
    prefixes = ["", *(p for p in prefixes if p)]  # the bare prompt is always the first context
    groups = context_groups(len(prefixes), hp)
    opening = opening_ids(lm.tokenizer, hp.document_start)
    last = chosen[-1]

    values, cached = [], []
    kept = None if keep is None else (keep, weights_now(lm))
    with progress_bar("MEMIT z", total=len(reqs), unit="fact", enabled=progress) as bar:
        for req in reqs:
            value, found = _value(lm, last, req, prefixes, hp, kept)
            values.append(value)
            cached.append(found)
            bar.advance()
            if advance is not None:
                advance()
    zs = torch.stack([_target(v) for v in values])

    edits: list[Edit] = []
    gaps: list[float] = []
    try:
        for i, layer in enumerate(chosen):
            keys = torch.stack(
                [mean_key(prefix_keys(lm, layer, req, prefixes, opening).cpu(), groups) for req in reqs]
            )
            gap = zs - subject_states(lm, last, reqs, opening)
            gaps.append(float(gap.norm(dim=1).mean()))
            mom2 = stats[layer].mom2 if stats is not None else torch.eye(lm.d_mlp, dtype=torch.float64)
            left = memit_left(keys, mom2, hp.mom2_update_weight)
            edits.append(Edit(lm, layer, left, (gap / (len(chosen) - i)).T).apply())
        gap_after = float((zs - subject_states(lm, last, reqs, opening)).norm(dim=1).mean())
    finally:
        for e in reversed(edits):
            e.undo()
    info = {
        "steps": [v.steps for v in values],
        "z_cached": cached,  # read from ``keep`` rather than searched now
        "p_new": [v.losses[-1]["p_new"] for v in values],  # on the prefixed prompts, at the end of the search
        "delta_norm": [float(v.delta.norm()) for v in values],
        "z_init_norm": [v.v_init_norm for v in values],
        "z_gap": gaps,  # per layer, mean |z - h| before its update
        "z_gap_after": gap_after,
        "update_norm": [float((e.left @ e.right.T).norm()) for e in edits],
        "seconds": round(time.perf_counter() - start, 3),
        "stats_tokens": {str(k): v.n_tokens for k, v in (stats or {}).items() if k in chosen},
    }
    return MemitEdit(lm, edits, reqs, hp, zs, info)


# Fields a target z does not depend on: the range below its last layer, the statistics and lambda (the keys'
# side of the update). Every other field, present or future, is part of ``z_key``.
_NOT_Z = frozenset(
    {"layers", "relative_layers", "mom2_adjustment", "mom2_corpus", "mom2_n_tokens", "mom2_max_length",
     "mom2_update_weight", "_source"}
)  # fmt: skip


def weights_now(lm: LoadedModel) -> str:
    """A digest of the model as it is now: its weights when loaded, every MLP output projection now (what an
    applied edit changes, so that a target searched on an edited model is never taken for the unedited one's),
    and the kind of device it runs on (a GPU's search differs from the CPU's in the last bits)."""
    digest = hashlib.sha256(f"{lm.weights_hash} {lm.device.type}".encode())
    for layer in range(lm.n_layers):
        weights = lm.adapter.neuron_weights(layer).detach().cpu().contiguous()
        digest.update(weights.view(torch.uint8).numpy().data)  # bytes of any dtype, bfloat16 included
    return digest.hexdigest()


def z_cache(lm: LoadedModel) -> Path:
    """The model's shared folder of target searches (``memit(keep=...)``) under ``$NEURONMAP_CACHE``."""
    return cache_root() / "memit-z" / lm.weights_hash[:16]


def z_key(model: str, layer: int, req: Request, prefixes: list[str], hp: MemitHparams) -> str:
    """A name for the target search of ``req`` at ``layer`` on the model whose ``weights_now`` is ``model``: a
    digest of those, the request, prefixes and every hparam the search reads."""
    what = {
        "model": model,
        "layer": layer,
        "request": req.to_dict(),
        "prefixes": prefixes,
        "hparams": {k: v for k, v in hp.to_dict().items() if k not in _NOT_Z},
    }
    return hashlib.sha256(json_text(what).encode()).hexdigest()[:32]


def _value(
    lm: LoadedModel,
    layer: int,
    req: Request,
    prefixes: list[str],
    hp: MemitHparams,
    keep: tuple[Path, str] | None,
) -> tuple[ValueResult, bool]:
    """The request's target search, or the one kept in ``keep`` (folder, ``weights_now``) under its ``z_key``, and
    whether it was found there; read back from the file when it was just written, so that a resumed edit and an
    uninterrupted one use the same values."""
    key = None if keep is None else z_key(keep[1], layer, req, prefixes, hp)
    path = None if keep is None else keep[0] / f"z-{key}.safetensors"
    if path is not None and path.is_file():
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("value", "{}"))
            if meta.get("key") == key:
                found = ValueResult(
                    fh.get_tensor("delta"), meta["v_init_norm"], meta["losses"], fh.get_tensor("v_init")
                )
                return found, True
    value = compute_value(lm, layer, req, prefixes, hp, residual=True)
    if path is None:
        return value, False
    assert value.v_init is not None  # compute_value always reads it
    tensors = {
        "delta": value.delta.detach().cpu().contiguous(),
        "v_init": value.v_init.detach().cpu().contiguous(),
    }
    meta = {"key": key, "request": req.to_dict(), "v_init_norm": value.v_init_norm, "losses": value.losses}
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(save(tensors, metadata={"value": json.dumps(meta)}), path)
    return _value(lm, layer, req, prefixes, hp, keep)[0], False


def _target(value: ValueResult) -> torch.Tensor:
    """z = h + delta, in float64."""
    assert value.v_init is not None  # compute_value always reads it
    return value.v_init.to(torch.float64).cpu() + value.delta.to(torch.float64).cpu()


def _statistics(
    lm: LoadedModel,
    hp: MemitHparams,
    layers: list[int],
    given: dict[int, SecondMoment] | None,
    progress: bool,
) -> dict[int, SecondMoment]:
    """E[k k^T] of each layer: those given, the others computed (one pass for all) or read from the cache."""
    found = dict(given or {})
    for layer, st in found.items():
        if st.layer != layer:
            raise NeuronmapError(f"statistics of layer {st.layer} given for layer {layer}")
    missing = [layer for layer in layers if layer not in found]
    if missing:
        found.update(hparams_moments(lm, hp, missing, progress))
    return found
