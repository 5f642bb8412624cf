"""Second-moment statistics C = E[k k^T] of a layer's neurons (ROME's key) over the tokens of a corpus.

Streaming over batches of texts, accumulated in float64, memory bounded by one batch. Each (model weights,
layer, corpus, token count, text length) is cached as a safetensors file whose metadata records the tokens
actually used. One pass collects every requested layer that is not cached yet, and stops the forward pass after
the deepest of them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save

from neuronmap import __version__
from neuronmap.edit.corpus import Corpus, load_corpus
from neuronmap.edit.hparams import MemitHparams, RomeHparams
from neuronmap.errors import NeuronmapError
from neuronmap.models.batching import pad
from neuronmap.models.hooks import NeuronHook
from neuronmap.models.loader import LoadedModel
from neuronmap.models.output_hooks import stop_after
from neuronmap.models.registry import cache_root
from neuronmap.progress import progress_bar
from neuronmap.rundir import atomic_write_bytes


@dataclass
class SecondMoment:
    """E[k k^T] of one layer's neurons, with where it came from."""

    layer: int
    mom2: torch.Tensor  # (d_mlp, d_mlp) float64
    n_tokens: int
    n_texts: int
    corpus: str
    path: Path | None
    cached: bool  # read from the cache rather than computed now
    seconds: float = 0.0
    meta: dict[str, str] = field(default_factory=dict)

    def solve(self, k: torch.Tensor, ridge: float = 0.0) -> torch.Tensor:
        """C^-1 k in float64 (``ridge`` adds ridge * mean(diag C) to the diagonal first)."""
        c = self.mom2.to(torch.float64)
        if ridge:
            c = c + ridge * c.diagonal().mean() * torch.eye(c.shape[0], dtype=c.dtype)
        return torch.linalg.solve(c, k.to(device=c.device, dtype=torch.float64))


def stats_path(lm: LoadedModel, layer: int, corpus: Corpus, n_tokens: int, max_length: int) -> Path:
    return (
        cache_root()
        / "stats"
        / lm.weights_hash[:16]
        / f"{corpus.digest[:16]}-layer{layer}-n{n_tokens}-len{max_length}.safetensors"
    )


def _read(path: Path, layer: int) -> SecondMoment | None:
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            mom2 = fh.get_tensor("mom2")
    except Exception:  # a damaged cache entry is recomputed, not trusted
        return None
    return SecondMoment(
        layer, mom2, int(meta["tokens"]), int(meta["texts"]), meta["corpus"], path, cached=True, meta=meta
    )


def second_moments(
    lm: LoadedModel,
    layers: list[int],
    corpus: str | Corpus = "builtin:wiki",
    n_tokens: int = 100_000,
    max_length: int = 256,
    batch_size: int = 8,
    seed: int = 0,
    cache: bool = True,
    progress: bool = True,
) -> dict[int, SecondMoment]:
    """E[k k^T] for each of ``layers`` over the first ``n_tokens`` tokens of ``corpus`` (texts cut to
    ``max_length`` tokens), from the cache where present."""
    if n_tokens < 1:
        raise NeuronmapError("the statistics need at least one token")
    if max_length < 1 or batch_size < 1:
        raise NeuronmapError("max_length and batch_size must be positive")
    if lm.window is not None and max_length > lm.window:
        raise NeuronmapError(
            f"the statistics' text length {max_length} (--max-length, or mom2_max_length in the hparams) is "
            f"longer than the model's window of {lm.window}"
        )
    layers = lm.adapter.resolve_layers(layers)
    source = corpus if isinstance(corpus, Corpus) else load_corpus(corpus, seed=seed)
    found: dict[int, SecondMoment] = {}
    for layer in layers:
        hit = _read(stats_path(lm, layer, source, n_tokens, max_length), layer) if cache else None
        if hit is not None:
            found[layer] = hit
    missing = [layer for layer in layers if layer not in found]
    if missing:
        found.update(_collect(lm, missing, source, n_tokens, max_length, batch_size, cache, progress))
    return {layer: found[layer] for layer in layers}


def second_moment(lm: LoadedModel, layer: int, **kwargs: object) -> SecondMoment:
    return second_moments(lm, [layer], **kwargs)[layer]  # type: ignore[arg-type]


def hparams_moments(
    lm: LoadedModel, hp: RomeHparams | MemitHparams, layers: list[int], progress: bool = True
) -> dict[int, SecondMoment]:
    """The statistics an edit's hparams ask for (their corpus, token count and text length), for ``layers``."""
    return second_moments(
        lm,
        layers,
        corpus=hp.mom2_corpus,
        n_tokens=hp.mom2_n_tokens,
        max_length=hp.mom2_max_length,
        progress=progress,
    )


def _collect(
    lm: LoadedModel,
    layers: list[int],
    corpus: Corpus,
    n_tokens: int,
    max_length: int,
    batch_size: int,
    cache: bool,
    progress: bool,
) -> dict[int, SecondMoment]:
    start = time.perf_counter()
    d = lm.d_mlp
    acc = {layer: torch.zeros((d, d), dtype=torch.float64, device=lm.device) for layer in layers}
    seen, texts = 0, 0
    tok = lm.tokenizer
    stream = corpus.texts()
    with progress_bar("second moments", total=n_tokens, unit="tok", enabled=progress) as bar:
        while seen < n_tokens:
            chunk = [text for _, text in zip(range(batch_size), stream, strict=False)]
            if not chunk:
                break
            enc = [list(tok(t, add_special_tokens=True)["input_ids"])[:max_length] for t in chunk]
            enc = [ids for ids in enc if ids]
            if not enc:
                continue
            input_ids, attention = pad(enc, tok.pad_token_id, lm.device)
            mask = attention.bool()
            with (
                torch.no_grad(),
                NeuronHook(lm.adapter, layers) as hook,
                stop_after(lm.model, lm.adapter.names[max(layers)]),
            ):
                lm.model(input_ids=input_ids, attention_mask=attention, use_cache=False)
            take = min(int(mask.sum()), n_tokens - seen)
            for layer in layers:
                keys = hook.acts[layer][mask][:take].to(torch.float64)  # row-major: texts in order
                acc[layer].addmm_(keys.T, keys)
            texts += _texts_used(enc, take)
            seen += take
            bar.advance(take)
    if seen == 0:
        raise NeuronmapError(f"corpus {corpus.spec} gave no tokens")
    seconds = time.perf_counter() - start
    out = {}
    for layer in layers:
        mom2 = (acc[layer] / seen).cpu()
        meta = {
            "tokens": str(seen),
            "tokens_requested": str(n_tokens),
            "texts": str(texts),
            "corpus": corpus.spec,
            "corpus_digest": corpus.digest,
            "layer": str(layer),
            "max_length": str(max_length),
            "model": lm.spec,
            "weights_hash": lm.weights_hash,
            "neuronmap_version": __version__,
            "seconds": f"{seconds:.1f}",
        }
        path = stats_path(lm, layer, corpus, n_tokens, max_length)
        if cache:
            atomic_write_bytes(save({"mom2": mom2.contiguous()}, metadata=meta), path)
        out[layer] = SecondMoment(
            layer, mom2, seen, texts, corpus.spec, path if cache else None, False, seconds, meta
        )
    return out


def _texts_used(enc: list[list[int]], take: int) -> int:
    """How many texts of the batch had at least one of their tokens among the first ``take``."""
    used, total = 0, 0
    for ids in enc:
        if total >= take:
            break
        used += 1
        total += len(ids)
    return used
