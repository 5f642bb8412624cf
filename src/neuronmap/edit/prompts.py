"""Prompt templates with ``{}`` for the subject, and the subject's token span located by character position.

``trace.batch.encode`` finds a subject by its first occurrence in the text; a generated prefix may contain the
subject's words too, so here the span comes from where ``{}`` was filled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from neuronmap.errors import NeuronmapError
from neuronmap.models.batching import pad as pad_ids
from neuronmap.trace.batch import Encoded, char_spans, encode


def check_template(prompt: str, subject: str) -> None:
    """A clear error for the ways a (prompt, subject) pair can be wrong."""
    if not isinstance(subject, str) or not subject.strip():
        raise NeuronmapError("the subject is empty")
    if not isinstance(prompt, str) or not prompt.strip():
        raise NeuronmapError("the prompt is empty")
    count = prompt.count("{}")
    if count == 0:
        if subject in prompt:
            hint = prompt.replace(subject, "{}", 1)
            raise NeuronmapError(f"prompt {prompt!r} has no '{{}}' where the subject goes (write {hint!r})")
        raise NeuronmapError(
            f"subject {subject!r} is not in the prompt {prompt!r}, and the prompt has no '{{}}' for it"
        )
    if count > 1:
        raise NeuronmapError(f"prompt {prompt!r} has {count} '{{}}'; it needs exactly one, for the subject")
    if not prompt.replace("{}", "").strip():
        raise NeuronmapError(f"prompt {prompt!r} is only the subject")


def fill(prompt: str, subject: str, prefix: str = "") -> tuple[str, int, int]:
    """``prefix + prompt`` with the subject in place of ``{}``, and the subject's character span."""
    template = prefix + prompt
    start = template.index("{}")
    return template[:start] + subject + template[start + 2 :], start, start + len(subject)


def token_span(
    tokenizer: PreTrainedTokenizerBase, text: str, ids: Sequence[int], start: int, end: int
) -> tuple[int, int]:
    """[first, last + 1) of the tokens overlapping characters [start, end) of ``text``."""
    spans = char_spans(tokenizer, text, list(ids))
    inside = [i for i, (a, b) in enumerate(spans) if b > a and a < end and b > start]
    if not inside:
        raise NeuronmapError(f"subject {text[start:end]!r} covers no token of {text!r}")
    return inside[0], inside[-1] + 1


def encode_fact(
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    subject: str,
    target: str | None = None,
    prefix: str = "",
    opening: Sequence[int] = (),
) -> Encoded:
    """Tokenise ``prefix + prompt`` (subject filled) with an optional target, the subject span set by position,
    after the ``opening`` token ids (see ``document_start``)."""
    text, start, end = fill(prompt, subject, prefix)
    if target is None:
        ids = list(tokenizer(text, add_special_tokens=True)["input_ids"])
        if not ids:
            raise NeuronmapError(f"prompt {text!r} has no tokens")
        enc = Encoded(tuple(ids), (), len(ids) - 1, token_span(tokenizer, text, ids, start, end))
    else:
        enc = encode(tokenizer, text, target)
        text_ids = enc.input_ids[: enc.position + 1]
        span = token_span(tokenizer, text, text_ids, start, end)
        enc = Encoded(enc.input_ids, enc.target_ids, enc.position, span)
    return with_opening(enc, opening)


def with_opening(enc: Encoded, opening: Sequence[int]) -> Encoded:
    """``enc`` with token ids put before it (positions and the subject span shift along)."""
    if not opening:
        return enc
    n = len(opening)
    span = None if enc.subject_span is None else (enc.subject_span[0] + n, enc.subject_span[1] + n)
    return Encoded(tuple(opening) + enc.input_ids, enc.target_ids, enc.position + n, span)


def pad(
    encoded: Sequence[Encoded], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask) of encoded prompts."""
    return pad_ids([e.input_ids for e in encoded], pad_id, device)


def opening_ids(tokenizer: PreTrainedTokenizerBase, document_start_on: bool) -> list[int]:
    """What prompts start with: ``document_start`` when the hparams ask for it (``document_start: true``), else
    nothing (ROME's GPT-2 protocol)."""
    return document_start(tokenizer) if document_start_on else []


def document_start(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Token ids that open a document: none when the tokenizer adds a BOS itself, else ``<|endoftext|>`` (GPT-2,
    SmolLM2, GPT-NeoX separate documents with it) or the BOS token. Without one, the first token sits on the
    attention-sink position, where small models behave oddly: SmolLM2 continues a lone "The" with "-" (p=0.42),
    and a one-token subject's key there is nearly the same for every subject (ROME edits then leak to other
    subjects)."""
    probe = list(tokenizer("a", add_special_tokens=True)["input_ids"])
    if tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id]:
        return []
    vocab = tokenizer.get_vocab()
    if "<|endoftext|>" in vocab:
        return [vocab["<|endoftext|>"]]
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
