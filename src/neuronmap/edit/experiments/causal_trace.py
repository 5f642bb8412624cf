"""Causal tracing of facts (Meng et al. 2022, section 2): where does the model recall the object?

The subject's token embeddings get Gaussian noise (``samples`` seeded draws, the same draws for every
restoration, so differences between cells are not noise); then the clean value of one state at a time is put
back: the ``hidden`` state (a block's output) at (layer, position), or the ``mlp``/``attn`` output at one
position for a window of ``window`` layers around the layer (ROME's [l - w//2, l + w - w//2)). The effect of a
cell is the probability of the target with that restoration (averaged over draws); ``indirect`` subtracts the
corrupted probability (ROME's average indirect effect).

Cells that restore from layer l on share the corrupted run before l: those blocks are replayed from one recorded
corrupted pass instead of being recomputed, which halves the work on average.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from neuronmap.edit.dsets import Fact
from neuronmap.edit.prompts import encode_fact, opening_ids
from neuronmap.errors import NeuronmapError
from neuronmap.models.adapters import weight_of
from neuronmap.models.loader import LoadedModel
from neuronmap.models.memory import Budget, Footprint, format_bytes
from neuronmap.models.output_hooks import KINDS, OutputHooks, block_name, module_name, replay_blocks
from neuronmap.progress import progress_bar
from neuronmap.trace.batch import (
    Batch,
    Encoded,
    collate,
    fit_window,
    forward_target_logits,
    picked_logprob,
    picked_top1,
)
from neuronmap.trace.methods import noise_generator

POSITION_CLASSES = (
    "first subject token",
    "middle subject tokens",
    "last subject token",
    "first subsequent token",
    "further tokens",
    "last token",
)


POSITIONS = ("all", "subject", "subject_last")


@dataclass(frozen=True)
class TraceSettings:
    kinds: tuple[str, ...] = KINDS
    window: int = 10  # layers restored together for mlp and attn (hidden: always one)
    samples: int = 10
    noise_std: float = 0.1  # absolute std of the noise (see ``subject_noise_std``)
    seed: int = 0
    max_rows: int = 128  # rows per forward pass
    layers: tuple[int, ...] | None = None  # layers to restore at (None: all); checked against the model
    document_start: bool = False  # open each prompt as a document (see ``prompts.document_start``)
    positions: str = "all"  # text positions to restore at: "all", "subject" (each subject token: the study's
    # shape) or "subject_last" (ROME's convention)

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in KINDS]
        if bad or not self.kinds:
            raise NeuronmapError(f"--kind takes {', '.join(KINDS)} (comma-separated), got {bad or 'nothing'}")
        if self.window < 1 or self.samples < 1 or self.max_rows < 1:
            raise NeuronmapError("--window, --samples and the batch size must be at least 1")
        if self.noise_std < 0:
            raise NeuronmapError("the noise level must not be negative")
        if self.positions not in POSITIONS:
            raise NeuronmapError(f"positions must be one of {', '.join(POSITIONS)}, got {self.positions!r}")


@dataclass
class FactTrace:
    fact: Fact
    target: str
    tokens: list[str]  # the prompt's tokens (text positions only)
    span: tuple[int, int]
    p_clean: float
    p_corrupted: float
    known: bool  # every target token is the clean model's top-1
    table: pd.DataFrame = field(repr=False)  # kind, layer, position, token, effect, indirect


def subject_noise_std(lm: LoadedModel, subjects: Sequence[str], scale: float = 3.0) -> float:
    """``scale`` x the std of the input embeddings of the subjects' tokens (each subject tokenised alone), as
    ROME sets its noise from the facts it traces."""
    ids = [i for s in dict.fromkeys(subjects) for i in lm.tokenizer(s, add_special_tokens=False)["input_ids"]]
    if not ids:
        raise NeuronmapError("no subject tokens to measure the embedding spread on")
    embeddings = lm.adapter.input_embeddings()
    with torch.no_grad():
        values = embeddings(torch.tensor([ids], device=lm.device)).float()
    return scale * float(values.std())


def _embedding_name(lm: LoadedModel) -> str:
    target = lm.adapter.input_embeddings()
    return next(name for name, module in lm.model.named_modules() if module is target)


def _window(layer: int, kind: str, window: int, n_layers: int) -> list[int]:
    if kind == "hidden":
        return [layer]
    return list(range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2))))


def check_fact(lm: LoadedModel, fact: Fact, settings: TraceSettings, budget: Budget) -> None:
    """Refuse, naming where the fact came from, a prompt (with its target) longer than the model's window or too
    large to trace within ``budget``; before any model work."""
    opening = opening_ids(lm.tokenizer, settings.document_start)
    enc = encode_fact(lm.tokenizer, fact.prompt, fact.subject, fact.target or "?", "", opening)
    try:
        fit_window(enc, lm.window)
    except NeuronmapError as exc:
        raise NeuronmapError(f"{fact.where}: {exc}") from None
    positions_per_pass(lm, settings, enc, budget, fact.where)


def encode_trace_fact(lm: LoadedModel, fact: Fact, document_start: bool = False) -> tuple[Encoded, str]:
    """The fact tokenised, with its target or (target None) the clean model's top-1 token."""
    opening = opening_ids(lm.tokenizer, document_start)
    if fact.target is not None:
        return encode_fact(lm.tokenizer, fact.prompt, fact.subject, fact.target, "", opening), fact.target
    enc = encode_fact(lm.tokenizer, fact.prompt, fact.subject, None, "", opening)
    probe = collate([Encoded(enc.input_ids, (0,), enc.position, enc.subject_span)], 0, lm.device)
    with torch.no_grad():
        top = int(
            forward_target_logits(lm.model, probe)[0, 0].argmax()
        )  # the output layer at the last token only
    return Encoded(enc.input_ids, (top,), enc.position, enc.subject_span), lm.decode([top])


def noise_draws(lm: LoadedModel, n_tokens: int, settings: TraceSettings, key: str) -> torch.Tensor:
    """(samples, n_tokens, d_model) seeded by (seed, key): the same fact always gets the same noise."""
    weight = weight_of(lm.adapter.input_embeddings())
    gen = noise_generator(settings.seed, key)
    noise = torch.randn((settings.samples, n_tokens, weight.shape[1]), generator=gen) * settings.noise_std
    return noise.to(device=weight.device, dtype=weight.dtype)


def _add_noise(span: tuple[int, int], noise: torch.Tensor) -> object:
    def edit(x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        x[:, span[0] : span[1]] += noise.repeat(x.shape[0] // noise.shape[0], 1, 1)
        return x

    return edit


def _prob(lm: LoadedModel, rows: Batch) -> torch.Tensor:
    # The output layer at the target positions only: at every position its logits would outgrow the model.
    return picked_logprob(forward_target_logits(lm.model, rows), rows).exp()


def restored_prob(
    lm: LoadedModel,
    enc: Encoded,
    noise: torch.Tensor,
    restore: dict[tuple[str, int], Sequence[int]],
) -> float:
    """Reference path (no replay): mean p(target) over draws with the subject noised and the clean ``kind``
    state of each (kind, layer) put back at the given positions."""
    assert enc.subject_span is not None  # encode_trace_fact sets it
    one = collate([enc], lm.tokenizer.pad_token_id, lm.device)
    names = {key: module_name(lm.adapter, *key) for key in restore}
    with torch.no_grad(), OutputHooks(lm.model, record=list(names.values())) as clean:
        _prob(lm, one)
    edits = {_embedding_name(lm): _add_noise(enc.subject_span, noise)}
    for key, positions in restore.items():
        name, pos = names[key], list(positions)
        state = clean.outputs[name]

        def put_back(x: torch.Tensor, state: torch.Tensor = state, pos: list[int] = pos) -> torch.Tensor:
            x = x.clone()
            x[:, pos] = state[:, pos]
            return x

        edits[name] = put_back
    rows = one.repeat(noise.shape[0])
    with torch.no_grad(), OutputHooks(lm.model, edits=edits):  # type: ignore[arg-type]
        return float(_prob(lm, rows).mean())


def fact_bytes(fp: Footprint, settings: TraceSettings, tokens: int, targets: int, rows: int) -> int:
    """Estimated peak bytes of tracing a fact of ``tokens`` tokens with ``rows`` rows per forward pass: the pass,
    the clean outputs of every traced kind and the corrupted blocks' outputs kept for restoring, and a replayed
    block's input per row."""
    kept = (len(settings.kinds) + settings.samples) * fp.n_layers * tokens * fp.d_model * fp.element
    replay = rows * tokens * fp.d_model * fp.element
    return fp.pass_bytes(rows, tokens, 0, targets) + kept + replay


def positions_per_pass(
    lm: LoadedModel, settings: TraceSettings, enc: Encoded, budget: Budget | None, where: str = "the prompt"
) -> int:
    """Text positions restored per forward pass (``samples`` rows each): as many as ``max_rows`` allows, halved
    until the pass fits ``budget``; a fact that does not fit with one is refused before any model work."""
    per_pass = max(1, settings.max_rows // settings.samples)
    if budget is None:
        return per_pass
    fp = lm.footprint
    tokens, targets = len(enc.input_ids), len(enc.target_ids)

    def need(n: int) -> int:
        return fact_bytes(fp, settings, tokens, targets, n * settings.samples)

    while per_pass > 1 and need(per_pass) > budget.bytes:
        per_pass //= 2
    if need(per_pass) > budget.bytes:
        raise NeuronmapError(
            f"{where}: {tokens} tokens need about {format_bytes(need(per_pass))} to trace with {settings.samples} "
            f"samples, more than the {budget.describe()}; try fewer --samples or a larger --max-memory"
        )
    return per_pass


def trace_fact(
    lm: LoadedModel, fact: Fact, settings: TraceSettings, progress: bool = False, budget: Budget | None = None
) -> FactTrace:
    """Every (kind, layer, text position) cell of one fact; with a ``budget``, passes sized to fit it."""
    if settings.layers is not None:
        lm.adapter.resolve_layers(list(settings.layers))  # a clear error before any work
    enc, target = encode_trace_fact(lm, fact, settings.document_start)
    assert enc.subject_span is not None
    span, n_text, n_layers = enc.subject_span, enc.position + 1, lm.n_layers
    s = settings.samples
    one = collate([enc], lm.tokenizer.pad_token_id, lm.device)
    noise = noise_draws(lm, span[1] - span[0], settings, key=f"{fact.prompt}|{fact.subject}")
    hidden = [block_name(lm.adapter, layer) for layer in range(n_layers)]
    wanted = sorted({module_name(lm.adapter, k, layer) for k in settings.kinds for layer in range(n_layers)})
    with torch.no_grad(), OutputHooks(lm.model, record=wanted) as clean:
        logits = forward_target_logits(lm.model, one)
    p_clean = float(picked_logprob(logits, one).exp()[0])
    known = bool(picked_top1(logits, one)[0])
    embed = {_embedding_name(lm): _add_noise(span, noise)}
    with torch.no_grad(), OutputHooks(lm.model, edits=embed, record=hidden) as corrupt:  # type: ignore[arg-type]
        p_corrupted = float(_prob(lm, one.repeat(s)).mean())
    per_chunk = positions_per_pass(lm, settings, enc, budget, fact.where)
    rows_out = []
    layers = lm.adapter.resolve_layers(None if settings.layers is None else list(settings.layers))
    where = {"all": list(range(n_text)), "subject": list(range(*span)), "subject_last": [span[1] - 1]}[
        settings.positions
    ]
    cells = len(settings.kinds) * len(layers) * len(where)
    with progress_bar("causal trace", total=cells, unit="cell", enabled=progress) as bar:
        for kind in settings.kinds:
            for layer in layers:
                restored = _window(layer, kind, settings.window, n_layers)
                for first in range(0, len(where), per_chunk):
                    positions = torch.tensor(where[first : first + per_chunk], device=lm.device)
                    p = _restore_chunk(
                        lm, one, kind, restored, positions, clean.outputs, corrupt.outputs, embed, s
                    )
                    for t, value in zip(positions.tolist(), p.tolist(), strict=True):
                        rows_out.append((kind, layer, t, value))
                    bar.advance(len(positions))
    tokens = [lm.decode([i]) for i in enc.input_ids[:n_text]]
    table = pd.DataFrame(rows_out, columns=["kind", "layer", "position", "effect"])
    table["token"] = [tokens[t] for t in table["position"]]
    table["indirect"] = table["effect"] - p_corrupted
    table = table[["kind", "layer", "position", "token", "effect", "indirect"]]
    return FactTrace(fact, target, tokens, span, p_clean, p_corrupted, known, table)


def _restore_chunk(
    lm: LoadedModel,
    one: Batch,
    kind: str,
    restored: list[int],
    positions: torch.Tensor,
    clean: dict[str, torch.Tensor],
    corrupt: dict[str, torch.Tensor],
    embed: dict[str, object],
    s: int,
) -> torch.Tensor:
    """Mean p(target) over draws for each position of the chunk, restoring ``restored`` layers there."""
    n = len(positions)
    rows = one.repeat(n * s)
    row_pos = positions.repeat_interleave(s)
    index = torch.arange(n * s, device=positions.device)
    start = restored[0]
    edits: dict[str, object] = {}
    replay_layer, replay = None, None
    if kind == "hidden":
        name = block_name(lm.adapter, start)
        replay = corrupt[name].repeat(n, 1, 1)
        replay[index, row_pos] = clean[name][0, row_pos]
        replay_layer = start
    else:
        if start > 0:
            replay_layer = start - 1
            replay = corrupt[block_name(lm.adapter, start - 1)].repeat(n, 1, 1)
        else:
            edits.update(embed)
        for layer in restored:
            name = module_name(lm.adapter, kind, layer)
            state = clean[name]

            def put_back(x: torch.Tensor, state: torch.Tensor = state) -> torch.Tensor:
                x = x.clone()
                x[index, row_pos] = state[0, row_pos]
                return x

            edits[name] = put_back
    with torch.no_grad(), OutputHooks(lm.model, edits=edits):  # type: ignore[arg-type]
        if replay_layer is None:
            p = _prob(lm, rows)
        else:
            with replay_blocks(lm.adapter, replay_layer, replay):  # type: ignore[arg-type]
                p = _prob(lm, rows)
    return p.view(n, s).mean(1).float().cpu()


def position_classes(span: tuple[int, int], n_text: int) -> dict[str, list[int]]:
    """ROME's position classes of a prompt; a one-token subject is both its first and last token."""
    a, b, last = span[0], span[1], n_text - 1
    return {
        "first subject token": [a],
        "middle subject tokens": list(range(a + 1, b - 1)),
        "last subject token": [b - 1],
        "first subsequent token": [b] if b < last else [],
        "further tokens": list(range(b + 1, last)),
        "last token": [last],
    }


def average_by_class(traces: Sequence[FactTrace]) -> pd.DataFrame:
    """Mean effect and indirect effect by (kind, layer, position class): per fact over the class's positions,
    then over the facts that have the class (ROME's figure 2)."""
    parts = []
    for tr in traces:
        for cls, positions in position_classes(tr.span, len(tr.tokens)).items():
            if not positions:
                continue
            sel = tr.table[tr.table["position"].isin(positions)]
            means = sel.groupby(["kind", "layer"], as_index=False)[["effect", "indirect"]].mean()
            means["position_class"] = cls
            parts.append(means)
    if not parts:
        return pd.DataFrame(columns=["kind", "layer", "position_class", "effect", "indirect", "facts"])
    per_fact = pd.concat(parts, ignore_index=True)
    avg = per_fact.groupby(["kind", "layer", "position_class"], as_index=False).agg(
        effect=("effect", "mean"), indirect=("indirect", "mean"), facts=("effect", "size")
    )
    order = {c: i for i, c in enumerate(POSITION_CLASSES)}
    kinds = {k: i for i, k in enumerate(KINDS)}
    return avg.sort_values(
        ["kind", "position_class", "layer"],
        key=lambda col: (
            col.map(kinds)
            if col.name == "kind"
            else (col.map(order) if col.name == "position_class" else col)
        ),
    ).reset_index(drop=True)
