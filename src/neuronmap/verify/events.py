"""The forward passes of the causal check: the run's events, re-run with sets of neurons ablated.

An *event* is one prediction of the run: a context of a per-context trace (its text's tokens, then its target's
tokens but the last, teacher-forced as the trace scored them), or one token of an each-token trace (the document's
tokens up to the event's position, in the window the trace scored it in). The metric is the trace's own: the sum of
the target tokens' log-probabilities (:func:`neuronmap.trace.batch.logprob_sum`).

The model runs on *rows* (token sequences); an each-token row is a whole window and serves every event in it (the
logits at a position depend only on the tokens up to it), so a window is run once however many of its events are
asked for. Ablation sets the chosen neurons (inputs of the MLP output projection, as everywhere in neuronmap) to 0,
or to their mean over the tokens of the rows run, at every position of the row: the neurons are removed, not only
at the prediction, so what they do through later positions counts too.

Blocks below the lowest ablated layer see the same input whatever is ablated above them: each batch of rows runs
them once, records the hidden states that leave them and replays those for every ablated set
(:func:`neuronmap.models.output_hooks.replay_blocks`, as integrated gradients does).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from neuronmap.errors import NeuronmapError
from neuronmap.models.batching import pad
from neuronmap.models.hooks import NeuronHook
from neuronmap.models.loader import LoadedModel
from neuronmap.models.output_hooks import OutputHooks, block_name, replay_blocks, stop_after
from neuronmap.trace.batch import logprob_sum
from neuronmap.trace.events import document_windows
from neuronmap.verify.stats import NeuronSet

ABLATE = ("zero", "mean")


@dataclass
class EventSet:
    """The run's events as model inputs: ``rows`` (token sequences) and, per event, its row, the row positions
    whose logits predict its target tokens, those tokens (padded, with a mask), its context id and the token the
    map linked it to (first target token, or the input token at the scored position)."""

    rows: list[tuple[int, ...]]
    row: np.ndarray  # (E,)
    target_pos: np.ndarray  # (E, K)
    target_ids: np.ndarray  # (E, K)
    target_mask: np.ndarray  # (E, K) bool
    context_id: np.ndarray  # (E,)
    token: np.ndarray  # (E,)

    def __len__(self) -> int:
        return len(self.row)


def events_from_tables(
    contexts: pd.DataFrame,
    documents: pd.DataFrame | None,
    token_field: str,
    window: int | None,
    min_prefix: int,
) -> EventSet:
    """The events of a run's ``contexts.parquet`` (and ``documents.parquet`` for an each-token run)."""
    cid = contexts["context_id"].to_numpy(np.int64)
    position = contexts["position"].to_numpy(np.int64)
    if documents is None:
        rows = [tuple(int(t) for t in ids) for ids in contexts["input_ids"]]
        padded, present = pad([list(t) for t in contexts["target_ids"]], 0)
        target_ids, mask = padded.numpy(), present.bool().numpy()
        target_pos = position[:, None] + np.arange(target_ids.shape[1])[None, :]
        if token_field == "input":
            token = np.array([r[p] for r, p in zip(rows, position, strict=True)], np.int64)
        else:
            token = target_ids[:, 0].copy()
        return EventSet(rows, np.arange(len(rows)), target_pos * mask, target_ids, mask, cid, token)
    docs = dict(zip(documents["doc_id"].tolist(), documents["token_ids"], strict=True))
    rows, row_of = [], {}
    row, local = np.zeros(len(cid), np.int64), np.zeros(len(cid), np.int64)
    doc_ids = contexts["doc_id"].to_numpy(np.int64)
    for d in np.unique(doc_ids):
        ids = [int(t) for t in docs[int(d)]]
        windows = document_windows(int(d), ids, window, min_prefix)
        for i in np.flatnonzero(doc_ids == d):
            p = int(position[i])
            w = next((w for w in windows if w.first <= p < w.stop), None)
            if w is None:
                raise NeuronmapError(
                    f"event {int(cid[i])} (document {int(d)}, position {p}) lies in no window of its document; "
                    "trace the run again"
                )
            key = (int(d), w.start)
            if key not in row_of:
                row_of[key] = len(rows)
                rows.append(w.input_ids)
            row[i], local[i] = row_of[key], p - w.start
    target_ids = np.array([[int(t[0])] for t in contexts["target_ids"]], np.int64).reshape(-1, 1)
    if token_field == "input":
        token = np.array([rows[r][p] for r, p in zip(row, local, strict=True)], np.int64)
    else:
        token = target_ids[:, 0].copy()
    return EventSet(rows, row, local[:, None], target_ids, np.ones_like(target_ids, bool), cid, token)


def _event_logits(lm: LoadedModel, ids: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor,
                  pos: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """(E, K, V) logits at the events' target positions; the output layer runs at those positions only (a
    pre-hook on the output embeddings gathers them), as ``trace.batch.forward_picked_logits`` does."""
    get_head = getattr(lm.model, "get_output_embeddings", None)
    head = get_head() if callable(get_head) else None
    forward = lambda: lm.model(input_ids=ids, attention_mask=mask, use_cache=False).logits  # noqa: E731
    if not isinstance(head, torch.nn.Module):
        return forward()[rows, pos]

    def gather(module: torch.nn.Module, args: tuple) -> tuple:
        return (args[0][rows, pos], *args[1:])

    handle = head.register_forward_pre_hook(gather)
    try:
        return forward()
    finally:
        handle.remove()


def ablation_edit(sets: NeuronSet, means: torch.Tensor | None) -> Callable[[int, torch.Tensor], torch.Tensor]:
    """A ``NeuronHook`` edit setting ``sets``' neurons to 0, or to ``means[layer, neuron]``, at every position."""
    index = {layer: torch.as_tensor(np.asarray(n, np.int64)) for layer, n in sets.items()}

    def edit(layer: int, x: torch.Tensor) -> torch.Tensor:
        neurons = index[layer].to(x.device)
        x = x.clone()
        if means is None:
            x[..., neurons] = 0
        else:
            x[..., neurons] = means[layer, neurons].to(device=x.device, dtype=x.dtype)
        return x

    return edit


def _batches(events: EventSet, subset: np.ndarray, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(rows, positions in ``subset`` of their events) per batch of at most ``batch_size`` rows, in row order."""
    rows = np.unique(events.row[subset])
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        out.append((chunk, np.flatnonzero(np.isin(events.row[subset], chunk))))
    return out


def n_batches(events: EventSet, subset: np.ndarray, batch_size: int) -> int:
    return -(-len(np.unique(events.row[subset])) // batch_size)


def event_logprobs(
    lm: LoadedModel,
    events: EventSet,
    subset: np.ndarray,
    sets: Sequence[NeuronSet | None],
    *,
    means: torch.Tensor | None = None,
    batch_size: int = 16,
    advance: Callable[[int], None] | None = None,
    replay: bool = True,
) -> np.ndarray:
    """(len(sets), len(subset)) log p(target) of the events ``subset`` with each neuron set ablated (``None``: the
    clean model). ``means`` (n_layers, d_mlp) switches zero ablation to mean ablation. ``advance(1)`` is called
    after each batch of rows and set. With ``replay`` the blocks below the lowest ablated layer run once per batch
    (exact: they see the same input for every set)."""
    out = np.zeros((len(sets), len(subset)), np.float64)
    layers = sorted({layer for s in sets if s for layer in s})
    lowest = layers[0] if layers and all(s for s in sets) else 0
    pad_id = lm.tokenizer.pad_token_id or 0
    for chunk, where in _batches(events, subset, batch_size):
        ev = subset[where]
        ids, mask = pad([events.rows[r] for r in chunk], pad_id, lm.device)
        local = torch.as_tensor(np.searchsorted(chunk, events.row[ev]), device=lm.device)[:, None]
        pos = torch.as_tensor(events.target_pos[ev], device=lm.device)
        target = torch.as_tensor(events.target_ids[ev], device=lm.device)
        tmask = torch.as_tensor(events.target_mask[ev], device=lm.device)
        below = None
        if replay and lowest > 0:
            name = block_name(lm.adapter, lowest - 1)
            with torch.no_grad(), OutputHooks(lm.model, record=[name]) as rec, stop_after(lm.model, name):
                lm.model(input_ids=ids, attention_mask=mask, use_cache=False)
            below = rec.outputs[name]
        for i, neuron_set in enumerate(sets):
            with contextlib.ExitStack() as stack:
                stack.enter_context(torch.no_grad())
                if neuron_set:
                    edit = ablation_edit(neuron_set, means)
                    stack.enter_context(NeuronHook(lm.adapter, sorted(neuron_set), capture=False, edit=edit))
                if below is not None:
                    stack.enter_context(replay_blocks(lm.adapter, lowest - 1, below))
                logits = _event_logits(lm, ids, mask, local, pos)
                out[i, where] = logprob_sum(logits, target, tmask).double().cpu().numpy()
            if advance is not None:
                advance(1)
    return out


def neuron_means(lm: LoadedModel, events: EventSet, subset: np.ndarray, batch_size: int = 16) -> torch.Tensor:
    """(n_layers, d_mlp) mean activation of every neuron over every token of the rows of ``subset``'s events:
    the reference of mean ablation (the trace's ``--ablate mean`` takes its over every token of its contexts)."""
    total = torch.zeros((lm.n_layers, lm.d_mlp), dtype=torch.float64, device=lm.device)
    count = 0
    pad_id = lm.tokenizer.pad_token_id or 0
    for chunk, _ in _batches(events, subset, batch_size):
        ids, mask = pad([events.rows[r] for r in chunk], pad_id, lm.device)
        keep = mask.bool()

        def add(layer: int, x: torch.Tensor, keep: torch.Tensor = keep) -> torch.Tensor:
            total[layer] += x[keep].double().sum(0)
            return x

        last = block_name(lm.adapter, lm.n_layers - 1)  # the output layer is not needed
        with (
            torch.no_grad(),
            NeuronHook(lm.adapter, range(lm.n_layers), capture=False, edit=add),
            stop_after(lm.model, last),
        ):
            lm.model(input_ids=ids, attention_mask=mask, use_cache=False)
        count += int(keep.sum())
    return (total / max(count, 1)).to(lm.dtype)
