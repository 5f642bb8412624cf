"""Tokenising contexts and the metric every method scores: the log-probability of the target.

A context is ``text`` followed by ``target``. The model input is the text's tokens followed by all target tokens
but the last (teacher forcing); the metric sums the log-probabilities of the target tokens. The prediction
position is the last text token, the one that predicts the first target token.

Leading spaces: when the text does not end in whitespace and the target does not start with it, one space is put
before the target ("...the city of" + "Paris" scores " Paris"), because BPE vocabularies carry the space on the
word that follows it. A target that already starts with a space, or a text that ends in one, is used as written.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import PreTrainedTokenizerBase

from neuronmap.errors import NeuronmapError
from neuronmap.models.batching import pad
from neuronmap.trace.config import TRUNCATE


@dataclass(frozen=True)
class Encoded:
    input_ids: tuple[int, ...]
    target_ids: tuple[int, ...]
    position: int  # index of the last text token
    subject_span: tuple[int, int] | None  # [start, end) token positions of the subject, if any

    @property
    def subject_last(self) -> int:
        if self.subject_span is None:
            raise NeuronmapError("this context has no subject")
        return self.subject_span[1] - 1


@dataclass
class Batch:
    """Right-padded tensors for a list of encoded contexts."""

    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    position: torch.Tensor  # (B,) prediction position
    target_ids: torch.Tensor  # (B, K) padded with 0
    target_pos: torch.Tensor  # (B, K) positions whose logits predict the targets
    target_mask: torch.Tensor  # (B, K) bool
    encoded: list[Encoded]

    def __len__(self) -> int:
        return self.input_ids.shape[0]

    def repeat(self, n: int) -> Batch:
        """Each row ``n`` times in a row (row b becomes rows b*n .. b*n+n-1): copies for batched variants."""
        rep = {k: getattr(self, k).repeat_interleave(n, dim=0) for k in _TENSORS}
        return Batch(**rep, encoded=[e for e in self.encoded for _ in range(n)])


_TENSORS = ("input_ids", "attention_mask", "position", "target_ids", "target_pos", "target_mask")


def target_string(text: str, target: str) -> str:
    if text and not text[-1].isspace() and target and not target[0].isspace():
        return " " + target
    return target


def _ids(tokenizer: PreTrainedTokenizerBase, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def char_spans(tokenizer: PreTrainedTokenizerBase, text: str, ids: list[int]) -> list[tuple[int, int]]:
    """Character span of each token of ``text``: offsets from fast tokenizers, cumulative decoding otherwise."""
    if tokenizer.is_fast:
        enc = tokenizer(text, add_special_tokens=True, return_offsets_mapping=True)
        return [tuple(span) for span in enc["offset_mapping"]]
    spans, prev = [], 0
    for i in range(len(ids)):
        end = len(tokenizer.decode(ids[: i + 1], skip_special_tokens=True))
        spans.append((prev, end))
        prev = end
    return spans


def subject_span(
    tokenizer: PreTrainedTokenizerBase, text: str, ids: list[int], subject: str
) -> tuple[int, int]:
    start = text.find(subject)
    if start < 0:
        raise NeuronmapError(f"subject {subject!r} does not occur in its prompt {text!r}")
    end = start + len(subject)
    inside = [
        i for i, (a, b) in enumerate(char_spans(tokenizer, text, ids)) if b > a and a < end and b > start
    ]
    if not inside:
        raise NeuronmapError(f"subject {subject!r} covers no token of {text!r}")
    return inside[0], inside[-1] + 1


def encode(tokenizer: PreTrainedTokenizerBase, text: str, target: str, subject: str | None = None) -> Encoded:
    """Tokenise one context; the target is split from a joint tokenisation when the text's tokens are its prefix."""
    text_ids = _ids(tokenizer, text, special=True)
    if not text_ids:
        raise NeuronmapError(f"context {text!r} has no tokens")
    if not target:
        raise NeuronmapError(f"context {text!r} has an empty target")
    tstr = target_string(text, target)
    joint = _ids(tokenizer, text + tstr, special=True)
    # Separate encoding could split words differently from how the model saw them in running text.
    target_ids = (
        joint[len(text_ids) :] if joint[: len(text_ids)] == text_ids else _ids(tokenizer, tstr, False)
    )
    if not target_ids:
        raise NeuronmapError(f"target {target!r} of context {text!r} encodes to no tokens")
    span = subject_span(tokenizer, text, text_ids, subject) if subject else None
    return Encoded(tuple(text_ids + target_ids[:-1]), tuple(target_ids), len(text_ids) - 1, span)


def fit_window(
    enc: Encoded, window: int | None, truncate: str | None = None, hint: str = ""
) -> tuple[Encoded, int]:
    """``enc`` within a model window of ``window`` positions, and how many tokens were cut.

    A longer input is refused (``hint`` follows the message) unless ``truncate`` is ``"left"``, which drops its
    first tokens: a next-token prediction depends most on the tokens nearest to it. Positions and the subject span
    shift along; a cut through the subject, or a target that alone fills the window, is refused, since the result
    would not be the context the user asked about. Messages name no place: callers put the file and line first."""
    n = len(enc.input_ids)
    if window is None or n <= window:
        return enc, 0
    over = f"{n} tokens, longer than the model's window of {window}"
    if truncate is None:
        raise NeuronmapError(over + hint)
    if truncate not in TRUNCATE:
        raise NeuronmapError(f"unknown truncation {truncate!r}; choose one of {', '.join(TRUNCATE)}")
    cut = n - window
    if enc.position - cut < 0:
        raise NeuronmapError(f"{over}, and its target alone is {len(enc.target_ids)} tokens")
    span = enc.subject_span
    if span is not None:
        if span[0] < cut:
            raise NeuronmapError(f"{over}; keeping the last {window} would cut its subject")
        span = (span[0] - cut, span[1] - cut)
    return Encoded(enc.input_ids[cut:], enc.target_ids, enc.position - cut, span), cut


def collate(encoded: Sequence[Encoded], pad_id: int, device: torch.device | str = "cpu") -> Batch:
    input_ids, attention = pad([e.input_ids for e in encoded], pad_id, device)
    target_ids, target_mask = pad([e.target_ids for e in encoded], 0, device)
    position = torch.tensor([e.position for e in encoded], dtype=torch.long, device=device)
    # Target k is predicted at position + k; padding slots hold 0, as the ids do.
    target_pos = (position[:, None] + torch.arange(target_ids.shape[1], device=device)) * target_mask
    return Batch(input_ids, attention, position, target_ids, target_pos, target_mask.bool(), list(encoded))


def target_logprob(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """(B,) sum of the target tokens' log-probabilities under teacher forcing."""
    rows = torch.arange(logits.shape[0], device=logits.device)[:, None]
    return picked_logprob(logits[rows, batch.target_pos], batch)


def target_top1(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """(B,) whether every target token is the model's top prediction (the 'known' test)."""
    rows = torch.arange(logits.shape[0], device=logits.device)[:, None]
    return picked_top1(logits[rows, batch.target_pos], batch)


def picked_logprob(picked: torch.Tensor, batch: Batch) -> torch.Tensor:
    """:func:`target_logprob` from the logits at the target positions only, (B, K, V)."""
    return logprob_sum(picked, batch.target_ids, batch.target_mask)


def logprob_sum(picked: torch.Tensor, target_ids: torch.Tensor, target_mask: torch.Tensor) -> torch.Tensor:
    """(N,) the metric from (N, K, V) logits at the target positions: the sum of the (N, K) target tokens'
    log-probabilities where ``target_mask`` is set (teacher forcing: a multi-token target sums its tokens)."""
    lp = picked.float().log_softmax(-1).gather(-1, target_ids[..., None]).squeeze(-1)
    return (lp * target_mask).sum(-1)


def picked_top1(picked: torch.Tensor, batch: Batch) -> torch.Tensor:
    """:func:`target_top1` from the logits at the target positions only, (B, K, V)."""
    return ((picked.argmax(-1) == batch.target_ids) | ~batch.target_mask).all(-1)


def _takes_logits_to_keep(model: torch.nn.Module) -> bool:
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def forward_target_logits(model: torch.nn.Module, batch: Batch, **kwargs: object) -> torch.Tensor:
    """(B, K, V) logits at the positions that predict the targets. Where the model takes ``logits_to_keep``
    (Hugging Face causal LMs), the output layer runs only at those positions, not at every position: on a
    small model with a large vocabulary that is most of a forward and backward pass."""
    keep = torch.unique(batch.target_pos[batch.target_mask])  # sorted
    rows = torch.arange(len(batch), device=batch.input_ids.device)[:, None]
    if len(keep) == 0 or len(keep) >= batch.input_ids.shape[1] or not _takes_logits_to_keep(model):
        return forward_logits(model, batch, **kwargs)[rows, batch.target_pos]
    logits = forward_logits(model, batch, logits_to_keep=keep, **kwargs)
    slot = torch.searchsorted(keep, batch.target_pos).clamp_(max=len(keep) - 1)  # masked slots: any index
    return logits[rows, slot]


def forward_picked_logits(model: torch.nn.Module, batch: Batch, **kwargs: object) -> torch.Tensor:
    """:func:`forward_target_logits` with the output layer run at each row's own target positions only (a
    pre-hook on the output embeddings gathers them), not at the union of all rows' target positions: the same
    logits, for rows whose prediction positions differ. Models without output embeddings take the plain path."""
    get_head = getattr(model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    if not isinstance(head, torch.nn.Module):
        return forward_target_logits(model, batch, **kwargs)
    rows = torch.arange(len(batch), device=batch.input_ids.device)[:, None]

    def gather(module: torch.nn.Module, args: tuple) -> tuple:
        return (args[0][rows, batch.target_pos], *args[1:])

    handle = head.register_forward_pre_hook(gather)
    try:
        return forward_logits(model, batch, **kwargs)
    finally:
        handle.remove()


def forward_logits(model: torch.nn.Module, batch: Batch, **kwargs: object) -> torch.Tensor:
    return model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False, **kwargs
    ).logits
