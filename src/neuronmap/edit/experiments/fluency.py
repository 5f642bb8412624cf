"""Fluency as ROME measures it: the weighted entropy of 2- and 3-grams of sampled generations (a model that
repeats itself scores low), on ROME's scale.

As ROME's eval (``generate_fast`` then ``n_gram_entropy``): top-5 sampling up to ``gen_length`` tokens *in all*,
the prompt's counted (ROME: 100); the whole text (prompt and continuation) NFKD-normalised, blank lines joined
and ``<|endoftext|>`` dropped; words from NLTK's ``word_tokenize``; the entropy of 2- and 3-grams weighted 2/3
and 4/3, then averaged. ``word_tokenize`` splits sentences with Punkt's trained English model, a download that
is not available offline; here Punkt runs with its untrained parameters, which give the same words except after
an abbreviation the English model knows ("Dr. Smith": split after "Dr" here, not by ROME).
"""

from __future__ import annotations

import hashlib
import math
import unicodedata
from collections import Counter
from collections.abc import Sequence
from functools import cache

import torch
from transformers import GenerationMixin

from neuronmap.errors import NeuronmapError
from neuronmap.models.batching import pad
from neuronmap.models.loader import LoadedModel

NGRAMS = (2, 3)
WEIGHTS = (2 / 3, 4 / 3)  # ROME's compute_n_gram_entropy


@cache
def _tokenizers() -> tuple:
    from nltk.tokenize import NLTKWordTokenizer
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    return PunktSentenceTokenizer(), NLTKWordTokenizer()


def words(text: str) -> list[str]:
    """``nltk.word_tokenize(text)``: sentences (Punkt, untrained: see the module docstring), then the Treebank
    word tokenizer NLTK applies to each."""
    sentences, treebank = _tokenizers()
    return [w for sentence in sentences.tokenize(text) for w in treebank.tokenize(sentence)]


def clean(text: str) -> str:
    """ROME's ``generate_fast`` clean-up of a decoded generation."""
    return unicodedata.normalize("NFKD", text).replace("\n\n", " ").replace("<|endoftext|>", "")


def ngram_entropy(text: str, ns: Sequence[int] = NGRAMS, weights: Sequence[float] = WEIGHTS) -> float:
    """Mean over n of weight_n x the entropy (bits) of the text's n-gram frequencies."""
    tokens = words(text)
    values = []
    for n, w in zip(ns, weights, strict=True):
        counts = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
        total = sum(counts.values())
        h = -sum(c / total * math.log2(c / total) for c in counts.values()) if total else 0.0
        values.append(w * h)
    return sum(values) / len(values)


def record_seed(seed: int, case_id: object) -> int:
    """The sampling seed of one record: the run's seed and the record's id, not its place in the run, so a run
    cut into chunks samples what one long run does."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{case_id}".encode()).digest()[:8], "big") >> 1


def generate(
    lm: LoadedModel,
    prompts: Sequence[str],
    gen_length: int = 100,
    seed: int = 0,
    top_k: int = 5,
    opening: Sequence[int] = (),
) -> list[str]:
    """Each prompt sampled on (:func:`generate_ids`), decoded and cleaned as ROME's ``generate_fast``."""
    rows = generate_ids(lm, prompts, gen_length, seed, top_k, opening)
    return [clean(lm.decode(ids, skip_special_tokens=True)) for ids in rows]


def generate_ids(
    lm: LoadedModel,
    prompts: Sequence[str],
    gen_length: int = 100,
    seed: int = 0,
    top_k: int = 5,
    opening: Sequence[int] = (),
) -> list[list[int]]:
    """Each prompt's token ids sampled on (top-k, seeded; the global RNG is left as it was) until it has
    ``gen_length`` tokens in all (at least one new); ``opening`` token ids go before each prompt (not counted, not
    returned). One left-padded batch: every row samples as many tokens as the shortest prompt needs, and each
    keeps its own share."""
    tok = lm.tokenizer
    prompt_ids = [list(tok(p, add_special_tokens=True)["input_ids"]) for p in prompts]
    budget = [max(1, gen_length - len(ids)) for ids in prompt_ids]
    encoded = [list(opening) + ids for ids in prompt_ids]
    ids, mask = pad(encoded, tok.pad_token_id, lm.device, side="left")
    width = ids.shape[1]
    devices = [lm.device] if lm.device.type == "cuda" else []
    model = lm.model
    if not isinstance(model, GenerationMixin):
        raise NeuronmapError(f"fluency needs a model that generates text; {type(model).__name__} does not")
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=True,
            top_k=top_k,
            top_p=1.0,
            temperature=1.0,
            max_new_tokens=max(budget),
            min_new_tokens=max(budget),
            pad_token_id=tok.pad_token_id,
        )
    return [
        prompt + row[width : width + n].tolist()
        for prompt, row, n in zip(prompt_ids, out, budget, strict=True)
    ]
