"""Context prefixes for ROME: short texts the model writes itself, put before the prompt so that the key and
the value hold up in varied contexts (ROME section 3.1). Generated once per model and settings, with seeded
top-k sampling, and cached on disk (they do not depend on the request)."""

from __future__ import annotations

import hashlib
import json

import torch

from neuronmap.edit.hparams import RomeHparams
from neuronmap.edit.prompts import opening_ids
from neuronmap.models.loader import LoadedModel
from neuronmap.models.registry import cache_root
from neuronmap.trace.store import atomic_write_json

STARTS = ("The", "Therefore", "Because", "I", "You")  # ROME's start words
TOP_K = 5


def context_prefixes(lm: LoadedModel, hparams: RomeHparams, cache: bool = True) -> list[str]:
    """``""`` (the bare prompt) followed by generated prefixes, each ending in ``". "``."""
    params = [list(p) for p in hparams.context_template_length_params]
    opening = opening_ids(lm.tokenizer, hparams.document_start)
    key = json.dumps(
        {
            "params": params,
            "seed": hparams.context_seed,
            "starts": STARTS,
            "top_k": TOP_K,
            "opening": opening,
        }
    )
    path = (
        cache_root()
        / "edit"
        / "prefixes"
        / f"{lm.weights_hash[:16]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    )
    if cache and path.is_file():
        return json.loads(path.read_text("utf-8"))
    gen = torch.Generator().manual_seed(hparams.context_seed)
    prefixes = [""]
    for length, count in hparams.context_template_length_params:
        starts = [STARTS[i % len(STARTS)] for i in range(count)]
        for text in _sample(lm, starts, length, gen, opening):
            prefixes.append(text.replace("{", " ").replace("}", " ") + ". ")
    if cache:
        atomic_write_json(prefixes, path)
    return prefixes


def _sample(
    lm: LoadedModel, starts: list[str], n_new: int, gen: torch.Generator, opening: list[int]
) -> list[str]:
    """Top-k sampling of ``n_new`` tokens after each start word (grouped by token length, no padding)."""
    tok = lm.tokenizer
    encoded = [opening + list(tok(s, add_special_tokens=True)["input_ids"]) for s in starts]
    texts: list[str | None] = [None] * len(starts)
    for width in sorted({len(ids) for ids in encoded}):
        rows = [i for i, ids in enumerate(encoded) if len(ids) == width]
        ids = torch.tensor([encoded[i] for i in rows], device=lm.device)
        with torch.no_grad():
            for _ in range(n_new):
                logits = lm.model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1].float()
                top = logits.topk(TOP_K, dim=-1)
                pick = torch.multinomial(top.values.softmax(-1).cpu(), 1, generator=gen).to(ids.device)
                ids = torch.cat([ids, top.indices.gather(1, pick)], dim=1)
        for row, i in enumerate(rows):
            texts[i] = tok.decode(ids[row, len(opening) :].tolist(), skip_special_tokens=True)
    return [t or "" for t in texts]
