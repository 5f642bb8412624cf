"""Fluency as ROME measures it: the weighted entropy of 2- and 3-grams of sampled generations (a model that
repeats itself scores low)."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import torch

from neuronmap.models.loader import LoadedModel

_WORDS = re.compile(r"\w+|[^\w\s]")
NGRAMS = (2, 3)
WEIGHTS = (2 / 3, 4 / 3)  # ROME's compute_n_gram_entropy


def ngram_entropy(text: str, ns: Sequence[int] = NGRAMS, weights: Sequence[float] = WEIGHTS) -> float:
    """Mean over n of weight_n x the entropy (bits) of the text's n-gram frequencies."""
    words = _WORDS.findall(text)
    values = []
    for n, w in zip(ns, weights, strict=True):
        counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        total = sum(counts.values())
        h = -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0
        values.append(w * h)
    return sum(values) / len(values)


def generate(
    lm: LoadedModel,
    prompts: Sequence[str],
    max_new_tokens: int = 100,
    seed: int = 0,
    top_k: int = 5,
    opening: Sequence[int] = (),
) -> list[str]:
    """Prompt + sampled continuation (top-k, seeded; the global RNG is left as it was), left-padded batch;
    ``opening`` token ids go before each prompt."""
    tok = lm.tokenizer
    encoded = [list(opening) + list(tok(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    width = max(len(ids) for ids in encoded)
    ids = torch.full((len(encoded), width), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, e in enumerate(encoded):
        ids[row, width - len(e) :] = torch.tensor(e)
        mask[row, width - len(e) :] = 1
    devices = [lm.device] if lm.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        out = lm.model.generate(
            input_ids=ids.to(lm.device),
            attention_mask=mask.to(lm.device),
            do_sample=True,
            top_k=top_k,
            top_p=1.0,
            temperature=1.0,
            max_new_tokens=max_new_tokens,
            min_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id,
        )
    return [
        p + tok.decode(row[width:], skip_special_tokens=True) for p, row in zip(prompts, out, strict=True)
    ]
