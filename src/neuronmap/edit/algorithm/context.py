"""Context prefixes for ROME: short texts the model writes itself, put before the prompt so that the key and
the value hold up in varied contexts (ROME section 3.1). Generated once per model and settings, with seeded
top-k sampling, and cached on disk (they do not depend on the request).

Two recipes (hparam ``context_templates``), each as its authors' code samples them (top-5, lengths that count
the prompt's tokens, text NFKD-normalised with blank lines joined):

- ``rome`` (default): ROME's ``get_context_templates``: for each ``[length, count]`` of
  ``context_template_length_params``, ``count`` texts sampled from the document-start token alone
  (``<|endoftext|>``), ``length`` tokens in all, braces removed.
- ``memit``: MEMIT's (and EasyEdit's): texts begun by the start words "The", "Therefore", "Because", "I", "You"
  in turn, ``length`` tokens in all counting the start word, braces made spaces; a ``document_start`` model
  gets its opening token before the start word.

ROME's sampling is unseeded; here ``context_seed`` seeds it, so an edit is reproducible.
"""

from __future__ import annotations

import hashlib
import json
import unicodedata

import torch

from neuronmap.edit.hparams import EditHparams
from neuronmap.edit.prompts import document_start, opening_ids
from neuronmap.models.loader import LoadedModel
from neuronmap.models.registry import cache_root
from neuronmap.rundir import atomic_write_json

STARTS = ("The", "Therefore", "Because", "I", "You")  # MEMIT's start words
TOP_K = 5


def context_prefixes(lm: LoadedModel, hparams: EditHparams, cache: bool = True) -> list[str]:
    """``""`` (the bare prompt) followed by generated prefixes, each ending in ``". "``."""
    params = [list(p) for p in hparams.context_template_length_params]
    mode = hparams.context_templates
    opening = opening_ids(lm.tokenizer, hparams.document_start)
    starts = _starts(lm, mode, opening)
    key = json.dumps({"params": params, "seed": hparams.context_seed, "templates": mode, "starts": starts,
                      "top_k": TOP_K})  # fmt: skip
    name = f"{lm.weights_hash[:16]}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"
    path = cache_root() / "edit" / "prefixes" / name
    if cache and path.is_file():
        return json.loads(path.read_text("utf-8"))
    gen = torch.Generator().manual_seed(hparams.context_seed)
    prefixes = [""]
    for length, count in hparams.context_template_length_params:
        rows = [starts[i % len(starts)] for i in range(count)]
        for (_, text), continuation in zip(rows, sample(lm, rows, length, gen), strict=True):
            decoded = lm.tokenizer.decode(text + continuation, skip_special_tokens=True)
            prefixes.append(template_text(str(decoded), mode))  # decode gives one str for one sequence
    if cache:
        atomic_write_json(prefixes, path)
    return prefixes


def template_text(text: str, mode: str) -> str:
    """A sampled text made a prefix as the recipe's code does (its ``generate_fast`` clean-up, then braces)."""
    text = unicodedata.normalize("NFKD", text).replace("\n\n", " ").replace("<|endoftext|>", "")
    brace = "" if mode == "rome" else " "
    return text.replace("{", brace).replace("}", brace) + ". "


def _starts(lm: LoadedModel, mode: str, opening: list[int]) -> list[tuple[list[int], list[int]]]:
    """The prompts sampling starts from, each as (ids not part of the text, ids of the text)."""
    tok = lm.tokenizer
    if mode == "rome":
        start = document_start(tok) or list(tok("", add_special_tokens=True)["input_ids"])
        return [(start, [])]
    return [(opening, list(tok(word, add_special_tokens=True)["input_ids"])) for word in STARTS]


def sample(
    lm: LoadedModel, prompts: list[tuple[list[int], list[int]]], length: int, gen: torch.Generator
) -> list[list[int]]:
    """Top-k continuations of each prompt to ``length`` tokens in all, the text's prompt tokens counted (at least
    one new token), grouped by prompt length (no padding)."""
    encoded = [head + text for head, text in prompts]
    out: list[list[int]] = [[] for _ in prompts]
    for width in sorted({len(ids) for ids in encoded}):
        rows = [i for i, ids in enumerate(encoded) if len(ids) == width]
        n_new = max(1, length - len(prompts[rows[0]][1] or prompts[rows[0]][0]))
        ids = torch.tensor([encoded[i] for i in rows], device=lm.device)
        with torch.no_grad():
            for _ in range(n_new):
                logits = lm.model(input_ids=ids, use_cache=False, logits_to_keep=1).logits[:, -1].float()
                top = logits.topk(TOP_K, dim=-1)
                pick = torch.multinomial(top.values.softmax(-1).cpu(), 1, generator=gen).to(ids.device)
                ids = torch.cat([ids, top.indices.gather(1, pick)], dim=1)
        for row, i in enumerate(rows):
            out[i] = ids[row, width:].tolist()
    return out
