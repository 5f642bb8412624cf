"""Sentence embeddings from a frozen encoder, cached on disk per model weights, texts and settings.

The classifier head trains in seconds; the encoder forward pass is the slow part (minutes for a few thousand
texts on a laptop CPU), so embeddings are computed once and reused by ``train``, ``synthesize``, ``refine`` and
``evaluate``. The cache key is the encoder's weights hash (not its name: a changed folder must not hit an old
entry), the hash of the texts, the pooling and ``max_length``. Files are ``.npy`` read with
``allow_pickle=False``.

Pooling: the mean of the last hidden state over the real (attention-mask) tokens, for encoders (as
sentence-transformers does for all-MiniLM-L6-v2) and for causal LMs alike (``output_hidden_states=True``; for
Llama-style models the last entry is after the final norm). For a causal LM, a mean over all tokens is a
steadier sentence summary than the last token alone, which mostly predicts the next word.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from neuronmap.errors import NeuronmapError
from neuronmap.outliers.data import texts_digest

if TYPE_CHECKING:  # the model code is imported only when texts are embedded (a cache hit needs none)
    import torch
    from transformers import BatchEncoding, PreTrainedModel, PreTrainedTokenizerBase

    from neuronmap.models.loader import LoadedModel

POOLING = "mean-last-hidden"
CACHE_VERSION = 1


def cache_dir() -> Path:
    from neuronmap.models.registry import cache_root

    return cache_root() / "outliers" / "embeddings"


def cache_key(weights_hash: str, digest: str, max_length: int, dtype: str | None = None) -> str:
    import hashlib

    # float32 (the default) keeps the key it always had, so existing caches stay valid.
    key = [CACHE_VERSION, weights_hash, digest, POOLING, max_length]
    blob = json.dumps(key if dtype in (None, "float32") else [*key, dtype])
    return hashlib.sha256(blob.encode()).hexdigest()[:40]


def _cache_path(key: str) -> Path:
    return cache_dir() / f"{key}.npy"


def _read_cache(key: str, n: int) -> np.ndarray | None:
    path = _cache_path(key)
    if not path.is_file():
        return None
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None  # a damaged entry is recomputed, never trusted
    return array if array.ndim == 2 and array.shape[0] == n else None


def _write_cache(key: str, array: np.ndarray, meta: dict) -> None:
    from neuronmap.rundir import atomic_write_bytes, atomic_write_json

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    atomic_write_bytes(buffer.getvalue(), _cache_path(key))
    atomic_write_json(meta, _cache_path(key).with_suffix(".json"))


def embed_texts(
    texts: list[str],
    encoder: str,
    *,
    weights_hash: str | None = None,
    loaded: LoadedModel | None = None,
    max_length: int = 128,
    batch_size: int = 32,
    device: str | None = None,
    dtype: str | None = None,
    use_cache: bool = True,
    progress: bool = True,
) -> tuple[np.ndarray, str]:
    """Embeddings ``(n, d)`` float32 of ``texts`` and the encoder's weights hash.

    With ``weights_hash`` known (a trained classifier records it), a cache hit returns without loading the
    encoder at all. On a miss the encoder is loaded (or ``loaded`` is used); if its hash differs from the
    recorded one, the encoder changed since training and the call is refused.
    """
    if not texts:
        return np.zeros((0, 0), dtype=np.float32), weights_hash or ""
    digest = texts_digest(texts)
    if weights_hash is not None and use_cache:
        hit = _read_cache(cache_key(weights_hash, digest, max_length, dtype), len(texts))
        if hit is not None:
            return hit, weights_hash
    if loaded is None:
        from neuronmap.models.loader import load_model

        loaded = load_model(encoder, device=device, dtype=dtype)
    actual = loaded.weights_hash
    if weights_hash is not None and actual != weights_hash:
        raise NeuronmapError(
            f"encoder '{encoder}' has other weights than when the classifier was trained "
            f"({actual[:12]} != {weights_hash[:12]}); retrain the classifier"
        )
    key = cache_key(actual, digest, max_length, dtype)
    if use_cache:
        hit = _read_cache(key, len(texts))
        if hit is not None:
            return hit, actual
    array = encode(loaded, texts, max_length=max_length, batch_size=batch_size, progress=progress)
    if use_cache:
        meta = {
            "encoder": encoder,
            "weights_hash": actual,
            "dtype": dtype,
            "texts": len(texts),
            "dim": array.shape[1],
        }
        _write_cache(key, array, {**meta, "pooling": POOLING, "max_length": max_length})
    return array, actual


def encode(
    loaded: LoadedModel,
    texts: list[str],
    *,
    max_length: int = 128,
    batch_size: int = 32,
    progress: bool = True,
) -> np.ndarray:
    """Mean-pooled last hidden states of ``texts``, batched by length so little compute goes to padding."""
    model, tokenizer = loaded.model, loaded.tokenizer
    if loaded.window is not None and max_length > loaded.window:
        raise NeuronmapError(
            f"--max-length {max_length} is longer than the encoder's window of {loaded.window} (texts are cut to "
            "--max-length tokens)"
        )
    # Right padding: causal LMs number positions from the left, so left padding would shift real tokens.
    side, tokenizer.padding_side = tokenizer.padding_side, "right"
    try:
        return _encode(model, tokenizer, loaded.device, texts, max_length, batch_size, progress)
    finally:
        tokenizer.padding_side = side


def _encode(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    device: torch.device,
    texts: list[str],
    max_length: int,
    batch_size: int,
    progress: bool,
) -> np.ndarray:
    import torch

    from neuronmap.progress import progress_bar

    lengths = [len(t) for t in texts]
    order = np.argsort(lengths, kind="stable")[::-1]
    out: np.ndarray | None = None
    with progress_bar("embedding", total=len(texts), unit="texts", enabled=progress) as bar, torch.no_grad():
        for start in range(0, len(texts), batch_size):
            index = order[start : start + batch_size]
            batch = tokenizer(
                [texts[i] for i in index],
                padding=True,
                truncation=True,
                max_length=max_length,
                return_tensors="pt",
            ).to(device)
            pooled = mean_pool(model, batch)
            if out is None:
                out = np.zeros((len(texts), pooled.shape[1]), dtype=np.float32)
            out[index] = pooled.float().cpu().numpy()
            bar.advance(len(index))
    assert out is not None
    return out


def mean_pool(model: PreTrainedModel, batch: BatchEncoding) -> torch.Tensor:
    """Mean of the last hidden state over the attention mask: ``(batch, d_model)``."""
    mask = batch["attention_mask"]
    inputs = {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
    output = model(**inputs, output_hidden_states=True)
    hidden = getattr(output, "last_hidden_state", None)
    if hidden is None:
        hidden = output.hidden_states[-1]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
