"""Top-activating examples and activation histograms of chosen neurons, in one streamed pass over a run's texts.

The texts are those the run traced: an each-token run's documents (cut into the trace's windows when longer than
the model's window), where every event position is a candidate (the neuron's activation at the token that
predicts the event's target); a per-context run's contexts, where the candidate is the context's prediction
position (the last text token, the one the trace scored). For each neuron the pass keeps:

- the top ``k`` candidates by activation, each with the neuron's activation at every token of a window around
  it (``before`` tokens before, ``after`` after, cut at the text's ends), for shading;
- a histogram of its activations over all candidates, with ``bins`` equal bins over ``[-R, R]``, where R is the
  smallest power of two not below the largest |activation|. R is not known in advance, so it grows as the pass
  goes: when a batch exceeds it, R doubles and each pair of bins merges into one bin of the doubled range. With
  ``bins`` divisible by 4 the old bins nest exactly in the new ones, so the histogram is exactly that of all the
  activations on the final bins (computed in float64), and the pass stays single.

Memory is bounded by the batch: per layer, the state is (k, neurons) values and positions, (k, neurons, window)
activations and (neurons, bins) counts, whatever the number of texts; each batch's top ``k`` per neuron comes
from ``torch.topk`` over its positions and is merged with the state by another ``topk``. The neurons are read
from a forward pre-hook on each layer's MLP output projection (``models.hooks``) as the pass reaches it, so only
one layer's activations are held beyond what the model itself holds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from neuronmap.errors import NeuronmapError
from neuronmap.models.batching import pad
from neuronmap.models.hooks import NeuronHook
from neuronmap.models.loader import LoadedModel
from neuronmap.neurons.config import HIST_BINS


@dataclass(frozen=True)
class Text:
    """One model input and the positions in it that can be examples."""

    input_ids: tuple[int, ...]
    positions: tuple[int, ...]  # candidate positions within input_ids
    context_ids: tuple[int, ...]  # the run's context (event) id of each candidate
    doc_id: int = -1  # each-token runs: the document; -1 for a per-context run
    offset: int = 0  # document position of input_ids[0]
    target: str | None = None  # per-context runs: the context's target; each-token: the next token


class ActivationHistogram:
    """Exact fixed-count histograms of many neurons' activations over a stream of batches (module docstring)."""

    def __init__(self, n: int, bins: int = HIST_BINS, device: torch.device | str = "cpu") -> None:
        if bins < 4 or bins % 4:
            raise NeuronmapError("histogram bins must be a positive multiple of 4")
        self.bins = bins
        self.counts = torch.zeros((n, bins), dtype=torch.int64, device=device)
        self.exponent = torch.full((n,), -1074, dtype=torch.int64, device=device)  # R = 2**exponent
        self.started = torch.zeros(n, dtype=torch.bool, device=device)
        self.peak = torch.full((n,), -torch.inf, dtype=torch.float64, device=device)

    def update(self, values: torch.Tensor) -> None:
        """Add (rows, n) activations: every row counts once for each neuron."""
        if not len(values):
            return
        values = values.double()
        self.peak = torch.maximum(self.peak, values.max(0).values)
        top = values.abs().max(0).values
        need = torch.where(
            top > 0, torch.ceil(torch.log2(top)).to(torch.int64), torch.full_like(self.exponent, -1074)
        )
        self.exponent = torch.where(self.started, self.exponent, need)
        self.started |= True
        grow = (need - self.exponent).clamp(min=0)
        if bool((grow > 0).any()):
            # d doublings at once: bin i of [-R, R] lies in bin floor((i + (2^d - 1) B/2) / 2^d) of
            # [-2^d R, 2^d R] (one doubling maps i to B/4 + floor(i/2)); beyond log2(B) + 1 doublings every bin
            # has reached one of the two central bins, so d is capped there.
            rows = torch.nonzero(grow).squeeze(1)
            d = grow[rows].clamp(max=self.bins.bit_length() + 1)[:, None]
            scale = torch.pow(2, d)
            source = torch.arange(self.bins, device=rows.device)[None, :]
            target = torch.div(source + (scale - 1) * (self.bins // 2), scale, rounding_mode="floor")
            merged = torch.zeros((len(rows), self.bins), dtype=self.counts.dtype, device=rows.device)
            self.counts[rows] = merged.scatter_add_(1, target, self.counts[rows])
            self.exponent = self.exponent + grow
        radius = torch.ldexp(torch.ones_like(top), self.exponent)
        index = torch.floor((values + radius) / (2 * radius) * self.bins).long().clamp_(0, self.bins - 1)
        offsets = torch.arange(values.shape[1], device=values.device) * self.bins
        flat = (index + offsets).reshape(-1)
        self.counts += torch.bincount(flat, minlength=self.counts.numel()).view_as(self.counts)

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) of each neuron's bins: [-R, R]."""
        radius = np.ldexp(1.0, self.exponent.cpu().numpy())
        return -radius, radius


class TopActivations:
    """The running top ``k`` positions of ``n`` neurons of one layer, with their activation windows."""

    def __init__(self, n: int, k: int, before: int, after: int, device: torch.device | str = "cpu") -> None:
        self.k, self.before, self.after = k, before, after
        width = before + 1 + after
        self.values = torch.full((k, n), -torch.inf, dtype=torch.float32, device=device)
        self.text = torch.full((k, n), -1, dtype=torch.int64, device=device)
        self.position = torch.zeros((k, n), dtype=torch.int64, device=device)
        self.start = torch.zeros((k, n), dtype=torch.int64, device=device)
        self.window = torch.zeros((k, n, width), dtype=torch.float32, device=device)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.values, self.text, self.position, self.start,
                                                          self.window))  # fmt: skip

    def update(self, acts: torch.Tensor, candidates: torch.Tensor, text_index: torch.Tensor) -> None:
        """Merge a batch: ``acts`` (B, T, n) float32, ``candidates`` (B, T) bool, ``text_index`` (B,)."""
        rows, width, n = acts.shape
        flat = acts.masked_fill(~candidates[..., None], -torch.inf).reshape(rows * width, n)
        kk = min(self.k, int(candidates.sum()))
        if kk == 0:
            return
        values, where = flat.topk(kk, dim=0)  # (kk, n)
        row, position = where // width, where % width
        start = (position - self.before).clamp(min=0)
        span = start[..., None] + torch.arange(self.window.shape[-1], device=acts.device)
        column = torch.arange(n, device=acts.device)[None, :, None]
        window = acts[row[..., None], span.clamp(max=width - 1), column]  # (kk, n, width)
        window = window.masked_fill(span > (position + self.after)[..., None], 0.0)
        values = torch.cat([self.values, values])
        keep = values.topk(self.k, dim=0).indices  # (k, n)
        self.values = values.gather(0, keep)
        self.text = torch.cat([self.text, text_index[row]]).gather(0, keep)
        self.position = torch.cat([self.position, position]).gather(0, keep)
        self.start = torch.cat([self.start, start]).gather(0, keep)
        self.window = torch.cat([self.window, window]).gather(
            0, keep[..., None].expand(-1, -1, window.shape[-1])
        )


@dataclass
class Examples:
    """What ``top_activating`` found: the examples and the histograms, as Arrow tables."""

    examples: pa.Table
    histograms: pa.Table
    positions: int  # candidates seen


def top_activating(
    lm: LoadedModel,
    texts: Sequence[Text],
    layers: np.ndarray,
    neurons: np.ndarray,
    *,
    k: int = 8,
    before: int = 19,
    after: int = 4,
    batch_size: int = 8,
    bins: int = HIST_BINS,
    progress: Callable[[int], None] | None = None,
) -> Examples:
    """Top ``k`` activating examples and activation histograms of each (layer, neuron), in one pass."""
    if k < 1:
        raise NeuronmapError("--examples must be at least 1")
    if batch_size < 1:
        raise NeuronmapError("--batch-size must be at least 1")
    layers, neurons = np.asarray(layers, np.int64), np.asarray(neurons, np.int64)
    chosen = sorted(int(layer) for layer in np.unique(layers))
    index = {layer: torch.as_tensor(neurons[layers == layer], device=lm.device) for layer in chosen}
    tops = {layer: TopActivations(len(index[layer]), k, before, after, lm.device) for layer in chosen}
    hists = {layer: ActivationHistogram(len(index[layer]), bins, lm.device) for layer in chosen}
    state: dict[str, torch.Tensor] = {}

    def observe(layer: int, x: torch.Tensor) -> torch.Tensor:
        acts = x.detach().index_select(-1, index[layer]).float()
        tops[layer].update(acts, state["candidates"], state["text"])
        hists[layer].update(acts[state["candidates"]])
        return x

    order = sorted(range(len(texts)), key=lambda i: len(texts[i].input_ids))  # less padding
    seen = 0
    with torch.no_grad(), NeuronHook(lm.adapter, chosen, capture=False, edit=observe):
        for first in range(0, len(order), batch_size):
            batch = order[first : first + batch_size]
            ids, mask = pad([texts[i].input_ids for i in batch], lm.tokenizer.pad_token_id or 0, lm.device)
            candidates = torch.zeros(ids.shape, dtype=torch.bool, device=lm.device)
            for row, i in enumerate(batch):
                candidates[row, list(texts[i].positions)] = True
            state["candidates"] = candidates
            state["text"] = torch.as_tensor(batch, dtype=torch.int64, device=lm.device)
            lm.model(input_ids=ids, attention_mask=mask, use_cache=False)
            seen += int(candidates.sum())
            if progress is not None:
                progress(len(batch))
    return Examples(_examples_table(lm, texts, layers, neurons, chosen, tops),
                    _hist_table(layers, neurons, chosen, hists), seen)  # fmt: skip


def _examples_table(
    lm: LoadedModel,
    texts: Sequence[Text],
    layers: np.ndarray,
    neurons: np.ndarray,
    chosen: list[int],
    tops: dict[int, TopActivations],
) -> pa.Table:
    cols: dict[str, list[np.ndarray]] = {c: [] for c in ("layer", "neuron", "rank", "text", "position",
                                                          "start", "activation")}  # fmt: skip
    windows = []
    for layer in chosen:
        top = tops[layer]
        values = top.values.cpu().numpy()  # (k, n)
        found = np.isfinite(values)
        column, rank = np.nonzero(found.T)  # by neuron, then rank
        cols["layer"].append(np.full(len(rank), layer))
        cols["neuron"].append(neurons[layers == layer][column])
        cols["rank"].append(rank)
        cols["text"].append(top.text.cpu().numpy()[rank, column])
        cols["position"].append(top.position.cpu().numpy()[rank, column])
        cols["start"].append(top.start.cpu().numpy()[rank, column])
        cols["activation"].append(values[rank, column])
        windows.append(top.window.cpu().numpy()[rank, column])
    flat = {c: np.concatenate(v) if v else np.zeros(0, np.int64) for c, v in cols.items()}
    width = windows[0].shape[-1] if windows else 1
    window = np.concatenate(windows) if windows else np.zeros((0, width), np.float32)
    text, position, start = (flat[c].astype(np.int64) for c in ("text", "position", "start"))
    # Every text's ids in one flat array: windows, targets and context ids are gathered, not looped over.
    lengths = np.array([len(t.input_ids) for t in texts], np.int64)
    base = np.r_[0, np.cumsum(lengths)][:-1].astype(np.int64)
    all_ids = np.fromiter((i for t in texts for i in t.input_ids), np.int64, int(lengths.sum()))
    before = tops[chosen[0]].before if chosen else 0
    stop = np.minimum(position + (width - before), lengths[text]) if len(text) else position
    length = stop - start
    offsets = np.r_[0, np.cumsum(length)].astype(np.int64)
    within = np.arange(offsets[-1]) - np.repeat(offsets[:-1], length)
    token_ids = all_ids[np.repeat(base[text] + start, length) + within]
    acts = window[np.arange(width)[None, :] < length[:, None]]  # row by row: the windows' kept tokens
    nxt = base[text] + position + 1  # each-token runs: the target is the document's next token
    has_next = position + 1 < lengths[text]
    next_ids = np.where(has_next, all_ids[np.minimum(nxt, max(len(all_ids) - 1, 0))], -1)
    vocab, inverse = np.unique(np.r_[token_ids, next_ids[has_next]], return_inverse=True)
    decoded = [lm.tokenizer.decode([int(t)]) for t in vocab]
    names = pa.array(decoded, pa.string())
    tokens = pc.take(names, pa.array(inverse[: len(token_ids)].astype(np.int64)))
    by_id = dict(zip(vocab.tolist(), decoded, strict=True))
    targets = [
        texts[t].target if texts[t].target is not None else by_id.get(int(n), "")
        for t, n in zip(text.tolist(), next_ids.tolist(), strict=True)
    ]
    # the run's context id of each example: candidates keyed by their place in the flat array
    keys = np.fromiter((base[i] + p for i, t in enumerate(texts) for p in t.positions), np.int64)
    ids = np.fromiter((c for t in texts for c in t.context_ids), np.int64, len(keys))
    order = np.argsort(keys, kind="stable")
    context_id = ids[order][np.searchsorted(keys[order], base[text] + position)] if len(text) else text
    offset = np.array([t.offset for t in texts], np.int64)
    doc_id = np.array([t.doc_id for t in texts], np.int64)
    return pa.table(
        {
            "layer": pa.array(flat["layer"].astype(np.int32)),
            "neuron": pa.array(flat["neuron"].astype(np.int32)),
            "rank": pa.array(flat["rank"].astype(np.int32)),
            "context_id": pa.array(context_id.astype(np.int64)),
            "doc_id": pa.array(doc_id[text]),
            "position": pa.array(position + offset[text]),
            "activation": pa.array(flat["activation"].astype(np.float32)),
            "tokens": pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), tokens),
            "activations": pa.ListArray.from_arrays(
                pa.array(offsets.astype(np.int32)), pa.array(acts.astype(np.float32))
            ),
            "target_index": pa.array((position - start).astype(np.int32)),
            "target": pa.array(targets, pa.string()),
        }
    )


def _hist_table(
    layers: np.ndarray, neurons: np.ndarray, chosen: list[int], hists: dict[int, ActivationHistogram]
) -> pa.Table:
    out: dict[str, list] = {c: [] for c in ("layer", "neuron", "lo", "hi", "counts", "total", "max")}
    for layer in chosen:
        hist = hists[layer]
        counts = hist.counts.cpu().numpy()
        lo, hi = hist.edges()
        width = (hi - lo) / hist.bins
        for j, neuron in enumerate(neurons[layers == layer]):
            nz = np.flatnonzero(counts[j])
            first, last = (int(nz[0]), int(nz[-1])) if len(nz) else (0, -1)
            out["layer"].append(layer)
            out["neuron"].append(int(neuron))
            out["lo"].append(float(lo[j] + first * width[j]))  # empty bins at the ends trimmed
            out["hi"].append(float(lo[j] + (last + 1) * width[j]))
            out["counts"].append(counts[j, first : last + 1].tolist())
            out["total"].append(int(counts[j].sum()))
            out["max"].append(float(hist.peak[j]))
    return pa.table(
        {
            "layer": pa.array(out["layer"], pa.int32()),
            "neuron": pa.array(out["neuron"], pa.int32()),
            "lo": pa.array(out["lo"], pa.float64()),
            "hi": pa.array(out["hi"], pa.float64()),
            "counts": pa.array(out["counts"], pa.list_(pa.int64())),
            "total": pa.array(out["total"], pa.int64()),
            "max": pa.array(out["max"], pa.float64()),
        }
    )
