"""The trace stage: contexts in, ``contexts.parquet`` and ``scores.parquet`` out, resumable part by part.

Contexts are cut into parts of ``part_size``; each part is scored in batches and written to ``RUN/parts`` (its
contexts table first, its scores table last, both renamed into place when complete). A killed run started again
with the same parameters skips the complete parts, so it ends with the same tables as an uninterrupted run:
a part's batches, and the noise of each context, do not depend on what ran before.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from neuronmap.contexts.grouping import group_run
from neuronmap.contexts.loaders import ContextSet, load_contexts, load_documents
from neuronmap.contexts.record import Context
from neuronmap.errors import NeuronmapError
from neuronmap.models.hooks import NeuronHook
from neuronmap.models.loader import LoadedModel, load_model
from neuronmap.models.memory import Budget, memory_budget
from neuronmap.progress import progress_bar
from neuronmap.rundir import (
    CONTEXTS,
    DOCUMENTS,
    DROPPED,
    PARTS,
    SCORES,
    RunDir,
    Stage,
    atomic_write_parquet,
    concat_parquet,
    read_parquet,
    stage,
)
from neuronmap.rundir.reprs import run_html
from neuronmap.trace import methods
from neuronmap.trace.batch import (
    Batch,
    Encoded,
    char_spans,
    collate,
    encode,
    fit_window,
    forward_target_logits,
)
from neuronmap.trace.config import TraceConfig
from neuronmap.trace.events import (
    Window,
    document_windows,
    event_bytes,
    event_frames,
    score_windows,
)
from neuronmap.trace.plan import Batches, method_bytes, plan_batches
from neuronmap.trace.targets import target_summary


@dataclass
class TraceResult:
    run: RunDir
    summary: dict[str, Any]
    skipped: bool = False  # the run was already complete

    @property
    def contexts(self) -> pd.DataFrame:
        return self.run.contexts()

    @property
    def scores(self) -> pd.DataFrame:
        return self.run.scores()

    def _repr_html_(self) -> str:  # a notebook shows the run's summary
        return run_html(self.run.path, "neuronmap trace")


def trace_run(
    config: TraceConfig | None = None,
    out: str | Path = "runs/trace",
    *,
    force: bool = False,
    progress: bool = True,
    loaded: LoadedModel | None = None,
    context_set: ContextSet | None = None,
    **overrides: Any,
) -> TraceResult:
    """Trace neuron importance for a set of contexts into the run directory ``out``.

    ``config`` fields may also be given as keyword arguments (``trace_run(out="runs/x", method="ablation")``). An already
    ``loaded`` model may be passed to skip loading (it must be the model ``config.model`` names). With ``group_by``,
    ``neuronmap.contexts.grouping.group_run`` adds its group columns once the trace is complete (or was already).
    ``contexts`` may be rows (a list of dicts, a DataFrame) with the fields of a JSONL file's records.
    ``context_set``: the contexts ``config.load_contexts()`` read already (the CLI reads them before torch loads).
    """
    # replace, not asdict: contexts given as rows (a DataFrame) are not deep-copied
    config = replace(config, **overrides) if config else TraceConfig(**overrides)
    config.validate()
    rows = context_set
    # Rows are loaded (and checked) now, so that run.json names them: "<N contexts in memory, sha256 HASH>".
    if not isinstance(config.contexts, str | os.PathLike):
        rows = config.load_contexts()
        config = replace(config, contexts=rows.source)
    result = _trace_locked(config, RunDir(out), force, progress, loaded, rows)
    if config.group_by:
        group_run(result.run, config.group_by, loaded=loaded)
    return result


def _trace_locked(
    config: TraceConfig,
    run: RunDir,
    force: bool,
    progress: bool,
    loaded: LoadedModel | None,
    rows: ContextSet | None = None,
) -> TraceResult:
    with stage(run, "trace", config.output_params(), resumable=True) as st:
        if force:
            run.clear()  # a new trace starts a new run: what every stage wrote goes
            st.previous = None
        previous = st.previous
        if previous is not None:
            _check_same(run, st)
            if st.complete:
                # parts/ outlives a run killed between its last write and the clean-up
                shutil.rmtree(run.path / PARTS, ignore_errors=True)
                # runs traced before finished_at left ``timing`` keep it there
                timing = {k: v for k, v in previous.get("timing", {}).items() if k != "finished_at"}
                return TraceResult(run, {**previous["summary"], **timing}, skipped=True)
        if config.threads:
            torch.set_num_threads(config.threads)
        load = load_documents if config.each_token else load_contexts
        context_set = rows or load(config.contexts, limit=config.limit, seed=config.seed)
        lm = (
            loaded
            if loaded is not None
            else load_model(config.model, device=config.device, dtype=config.dtype)
        )
        if previous is not None and previous.get("model", {}).get("weights_hash") != lm.weights_hash:
            raise NeuronmapError(
                f"{run.path}: was traced with other weights of '{config.model}'; use --force"
            )
        if config.each_token:
            return _run_events(st, config, context_set, lm, progress)
        return _run(st, config, context_set, lm, progress)


def _check_same(run: RunDir, st: Stage) -> None:
    run.check_format()
    # A parameter added after the run was made did not exist then: its default is what that run did.
    added = {f.name: f.default for f in fields(TraceConfig) if f.default is not MISSING}
    changed = st.changes(added)
    if changed:
        raise NeuronmapError(
            f"{run.path}: holds a trace with other parameters ({', '.join(changed)}); use --force to replace it "
            "or another --out"
        )


def _run(
    st: Stage, config: TraceConfig, context_set: ContextSet, lm: LoadedModel, progress: bool
) -> TraceResult:
    run = st.run
    _check_causal(lm, config.model)
    layers = lm.adapter.resolve_layers(config.layers)
    keep = context_set.default_keep if config.keep == "auto" else config.keep
    started = time.time()
    # Every context is checked (tokenised, within the window, within memory) before anything is written or run: a
    # bad one leaves no run behind.
    encoded, truncated = _encode_all(lm, context_set, config)
    budget = memory_budget(config.max_memory, lm.device)
    plan = _plan(lm, config, layers, encoded, budget, context_set.where)
    contexts, encoded = _predict_missing(lm, context_set.contexts, encoded, plan)
    _start(st, lm, layers, keep)
    mean_acts = _neuron_means(lm, encoded, layers, plan, progress) if config.ablate == "mean" else None

    parts_dir = run.path / PARTS
    n_parts = (len(encoded) + config.part_size - 1) // config.part_size
    batches = plan.by_part(config.part_size)
    todo = []
    for index in range(n_parts):
        ids = list(range(index * config.part_size, min(len(encoded), (index + 1) * config.part_size)))
        if not (parts_dir / f"scores-{index:05d}.parquet").is_file():
            todo.append(
                Part(index, ids, [contexts[i] for i in ids], [encoded[i] for i in ids], batches[index])
            )
    job = PartJob(config, layers, keep, mean_acts, plan.chunk)
    with progress_bar(
        f"tracing ({config.method})", total=len(encoded), unit="contexts", enabled=progress
    ) as bar:
        bar.skip(len(encoded) - sum(len(p.ids) for p in todo))
        if config.backend == "ray":
            from neuronmap.trace.ray_backend import score_parts_on_ray

            threads = config.threads or max(1, (os.cpu_count() or 1) // config.workers)
            results = score_parts_on_ray(job, todo, address=config.address, workers=config.workers,
                                         threads=threads, gpus_per_worker=config.gpus_per_worker)  # fmt: skip
        else:  # the bar moves per batch here; Ray's actors report whole parts
            results = (job.score(lm, part, advance=bar.advance) for part in todo)
        for part, ctx_frame, score_frame in results:
            atomic_write_parquet(ctx_frame, parts_dir / f"contexts-{part.index:05d}.parquet")
            atomic_write_parquet(score_frame, parts_dir / f"scores-{part.index:05d}.parquet")
            if config.backend == "ray":
                bar.advance(len(part.ids))
    summary = _finalize(st, n_parts, time.time() - started, truncated, plan.record(budget))
    return TraceResult(run, summary)


def _start(st: Stage, lm: LoadedModel, layers: list[int], keep: str) -> None:
    """The record of a trace that has begun: what a rerun must match to resume it."""
    st.wrote(CONTEXTS, DROPPED, SCORES, PARTS)
    st.start(
        {"model": lm.describe()}, model=lm.describe(), layers=layers, keep_resolved=keep, window=lm.window
    )


def _check_causal(lm: LoadedModel, model: str) -> None:
    if not lm.adapter.is_causal:
        raise NeuronmapError(
            f"'{model}' is an encoder ({lm.adapter.family.name}); tracing needs a causal language model"
        )


def _run_events(
    st: Stage, config: TraceConfig, documents: ContextSet, lm: LoadedModel, progress: bool
) -> TraceResult:
    """The each-token trace (``trace.events``): documents.parquet, then parts of windows as ``_run`` does."""
    run = st.run
    _check_causal(lm, config.model)
    layers = lm.adapter.resolve_layers(config.layers)
    started = time.time()
    token_ids = [list(lm.tokenizer(d.text, add_special_tokens=True)["input_ids"]) for d in documents]
    windows = [
        w for i, ids in enumerate(token_ids) for w in document_windows(i, ids, lm.window, config.min_prefix)
    ]
    if not windows:
        raise NeuronmapError(
            f"{documents.source}: no document has more than --min-prefix {config.min_prefix} tokens: nothing to predict"
        )
    budget = memory_budget(config.max_memory, lm.device)
    fp = lm.footprint

    def cost(rows: int, tokens: int, targets: int, chunk: int) -> int:
        return event_bytes(fp, config.method, layers, rows, tokens)

    lengths = [(len(w.input_ids), 1) for w in windows]
    plan = plan_batches(lengths, config, cost, budget, lambda i: documents.where(windows[i].doc_id))
    table = pd.DataFrame(
        {"doc_id": np.arange(len(token_ids), dtype=np.int64), "text": [d.text for d in documents],
         "token_ids": token_ids}
    )  # fmt: skip
    for key in sorted({k for d in documents for k in d.groups}):
        table[key] = [d.groups.get(key) for d in documents]
    atomic_write_parquet(table, run.path / DOCUMENTS)
    st.wrote(DOCUMENTS)
    _start(st, lm, layers, "all")
    first_ids = np.concatenate([[0], np.cumsum([len(w.local()) for w in windows])])
    groups = {i: dict(d.groups) for i, d in enumerate(documents)}
    spans = {i: np.asarray(char_spans(lm.tokenizer, d.text, ids), dtype=np.int64) for i, (d, ids) in
             enumerate(zip(documents, token_ids, strict=True))}  # fmt: skip
    parts_dir = run.path / PARTS
    n_parts = (len(windows) + config.part_size - 1) // config.part_size
    by_part = plan.by_part(config.part_size)
    with progress_bar(
        f"tracing each token ({config.method})", total=int(first_ids[-1]), unit="events", enabled=progress
    ) as bar:
        for index in range(n_parts):
            batches = by_part[index]
            if (parts_dir / f"scores-{index:05d}.parquet").is_file():
                bar.skip(int(first_ids[batches[-1].stop] - first_ids[batches[0].start]))
                continue
            ctx_frames, score_frames = [], []
            for b in batches:
                chunk: list[Window] = windows[b.start : b.stop]
                result = score_windows(lm, chunk, layers, config.method)
                events, scores = event_frames(lm, chunk, result, layers, int(first_ids[b.start]), config.top_k,
                                              config.threshold, groups, spans)  # fmt: skip
                ctx_frames.append(events)
                score_frames.append(scores)
                bar.advance(len(events))
            atomic_write_parquet(
                pd.concat(ctx_frames, ignore_index=True), parts_dir / f"contexts-{index:05d}.parquet"
            )
            atomic_write_parquet(
                pd.concat(score_frames, ignore_index=True), parts_dir / f"scores-{index:05d}.parquet"
            )
    counts = {"documents": len(token_ids), "windows": len(windows)}
    summary = _finalize(st, n_parts, time.time() - started, None, plan.record(budget), counts)
    return TraceResult(run, summary)


def _plan(
    lm: LoadedModel,
    config: TraceConfig,
    layers: list[int],
    encoded: list[Encoded],
    budget: Budget,
    where: Callable[[int], str],
) -> Batches:
    fp = lm.footprint

    def cost(rows: int, tokens: int, targets: int, chunk: int) -> int:
        return method_bytes(fp, config, layers, rows, tokens, targets, chunk)

    lengths = [(len(e.input_ids), len(e.target_ids)) for e in encoded]
    return plan_batches(lengths, config, cost, budget, where)


@dataclass
class Part:
    """A slice of the contexts whose scores are written together; the unit of resumption and of distribution."""

    index: int
    ids: list[int]  # consecutive
    contexts: list[Context]
    encoded: list[Encoded]
    batches: list[range]  # of ids, from the memory plan


@dataclass
class PartJob:
    """What scoring a part needs besides the model: picklable, so Ray workers receive it once."""

    config: TraceConfig
    layers: list[int]
    keep: str
    mean_acts: torch.Tensor | None
    chunk: int  # copies per forward of ablation and causal

    def load(self) -> LoadedModel:
        """The model, as a Ray actor loads it (on its own device)."""
        return load_model(self.config.model, device=self.config.device, dtype=self.config.dtype)

    def score(
        self, lm: LoadedModel, part: Part, advance: Callable[[int], None] | None = None
    ) -> tuple[Part, pd.DataFrame, pd.DataFrame]:
        """Score a part batch by batch; ``advance(n)`` (the local backend's progress bar) after each batch of n
        contexts. The part stays the unit of writing and of resumption."""
        ctx_rows, frames = [], []
        for batch in part.batches:
            sl = slice(batch.start - part.ids[0], batch.stop - part.ids[0])
            rows, frame = _score_batch(lm, self.config, self.layers, part.contexts[sl], part.encoded[sl],
                                       part.ids[sl], self.mean_acts, self.keep, self.chunk)  # fmt: skip
            ctx_rows.extend(rows)
            frames.append(frame)
            if advance is not None:
                advance(len(rows))
        return part, pd.DataFrame(ctx_rows), pd.concat(frames, ignore_index=True)


def _encode_all(
    lm: LoadedModel, context_set: ContextSet, config: TraceConfig
) -> tuple[list[Encoded], dict[str, int] | None]:
    """Tokenise every context within the model's window (or refuse it, naming its line); a context without a
    target gets a placeholder until :func:`_predict_missing`. The second value counts what ``--truncate left``
    cut (None without it)."""
    encoded, cuts = [], []
    for i, c in enumerate(context_set.contexts):
        if config.method == "causal" and not c.subject:
            raise NeuronmapError(
                f"{context_set.where(i)}: the context has no subject; the causal method needs one"
            )
        try:
            # A placeholder target for now: the text's tokens are what matter until the prediction is known.
            enc = encode(lm.tokenizer, c.text, c.target or "?", c.subject)
            enc, cut = fit_window(
                enc, lm.window, config.truncate, hint=f" (--truncate left keeps the last {lm.window})"
            )
        except NeuronmapError as exc:
            raise NeuronmapError(f"{context_set.where(i)}: {exc}") from None
        encoded.append(enc)
        cuts.append(cut)
    if config.truncate is None:
        return encoded, None
    made = [n for n in cuts if n]
    return encoded, {"contexts": len(made), "tokens_cut": sum(made), "most_cut": max(made, default=0)}


def _predict_missing(
    lm: LoadedModel, contexts: list[Context], encoded: list[Encoded], plan: Batches
) -> tuple[list[Context], list[Encoded]]:
    """Contexts without a target get the model's own top prediction (one token) as target."""
    contexts, encoded = list(contexts), list(encoded)
    for batch in plan.slices:
        ids = [i for i in batch if contexts[i].target is None]
        if not ids:
            continue
        rows = collate([encoded[i] for i in ids], lm.tokenizer.pad_token_id, lm.device)
        with torch.no_grad():
            logits = forward_target_logits(lm.model, rows)[:, 0]  # the placeholder's first: at the position
        for i, token in zip(ids, logits.argmax(-1).tolist(), strict=True):
            e = encoded[i]
            # Kept as a token id: decoding and re-encoding a lone token need not give it back.
            encoded[i] = Encoded(e.input_ids[: e.position + 1], (token,), e.position, e.subject_span)
            c = contexts[i]
            contexts[i] = Context(c.text, lm.decode([token]), c.subject, dict(c.groups))
    return contexts, encoded


def _neuron_means(
    lm: LoadedModel, encoded: list[Encoded], layers: list[int], plan: Batches, progress: bool = False
) -> torch.Tensor:
    """Mean activation of each neuron over every token of the context set: the reference for mean ablation."""
    total = torch.zeros((len(layers), lm.d_mlp), dtype=torch.float64, device=lm.device)
    count = 0
    with progress_bar("mean activations", total=len(encoded), unit="contexts", enabled=progress) as bar:
        for ids in plan.slices:
            batch = collate(encoded[ids.start : ids.stop], lm.tokenizer.pad_token_id, lm.device)
            mask = batch.attention_mask.bool()
            with torch.no_grad(), NeuronHook(lm.adapter, layers) as hook:
                forward_target_logits(lm.model, batch)
            for slot, layer in enumerate(layers):
                total[slot] += hook.acts[layer][mask].double().sum(0)
            count += int(mask.sum())
            bar.advance(len(ids))
    return (total / count).to(lm.dtype)


def _score_batch(
    lm: LoadedModel,
    config: TraceConfig,
    layers: list[int],
    contexts: list[Context],
    encoded: list[Encoded],
    ids: list[int],
    mean_acts: torch.Tensor | None,
    keep: str,
    chunk: int,
) -> tuple[list[dict[str, Any]], pd.DataFrame]:
    batch = collate(encoded, lm.tokenizer.pad_token_id, lm.device)
    result = _apply_method(lm, config, layers, batch, ids, mean_acts, chunk)
    p_target = result.logprob.double().exp().cpu().numpy()
    correct = result.correct.cpu().numpy()
    rows, frames = [], []
    for b, (c, e, cid) in enumerate(zip(contexts, encoded, ids, strict=True)):
        kept = bool(correct[b]) or keep == "all"
        row = _context_row(lm, cid, c, e, float(p_target[b]), bool(correct[b]), kept)
        if "p_corrupted" in result.extra:
            row["p_corrupted"] = float(result.extra["p_corrupted"][b])
        rows.append(row)
        if kept:
            frames.append(_top_scores(result, b, cid, layers, config))
    frame = pd.concat(frames, ignore_index=True) if frames else _top_scores(result, None, -1, layers, config)
    return rows, frame


def _apply_method(
    lm: LoadedModel,
    config: TraceConfig,
    layers: list[int],
    batch: Batch,
    ids: list[int],
    mean_acts: torch.Tensor | None,
    chunk: int,
) -> methods.MethodResult:
    positions = config.positions
    assert positions is not None  # TraceConfig.validate filled in the method's default
    if config.method == "attribution":
        return methods.attribution(lm, batch, layers, positions, config.per_position)
    if config.method == "integrated-gradients":
        return methods.integrated_gradients(
            lm,
            batch,
            layers,
            config.steps,
            positions,
            config.per_position,
            metric=config.ig_metric,
            rule=config.ig_rule,
        )
    if config.method == "ablation":
        return methods.ablation(lm, batch, layers, positions, config.candidates, chunk, mean_acts)
    return methods.causal(
        lm,
        batch,
        layers,
        [str(i) for i in ids],
        positions,
        config.samples,
        config.noise,
        config.candidates,
        chunk,
        config.seed,
    )


def _context_row(
    lm: LoadedModel, cid: int, c: Context, e: Encoded, p_target: float, known: bool, kept: bool
) -> dict[str, Any]:
    decode = lm.tokenizer.decode
    row: dict[str, Any] = {
        "context_id": cid,
        "text": c.text,
        "target": c.target,
        "target_ids": list(e.target_ids),
        "subject": c.subject,
        "p_target": p_target,
        "known": known,
        "kept": kept,
        "input_ids": list(e.input_ids),
        "tokens": [decode([t]) for t in e.input_ids],
        "target_tokens": [decode([t]) for t in e.target_ids],
        "position": e.position,
    }
    for key, value in c.groups.items():
        if key not in row:
            row[key] = (
                value if value is None or isinstance(value, str | int | float | bool) else json.dumps(value)
            )
    return row


def _top_scores(
    result: methods.MethodResult, b: int | None, cid: int, layers: list[int], config: TraceConfig
) -> pd.DataFrame:
    """The kept scores of one context: top-k by |score| (ties by index), and/or |score| >= threshold."""
    columns = {"context_id": np.int64, "layer": np.int32, "neuron": np.int32, "score": np.float32}
    if config.per_position:
        columns = {
            "context_id": np.int64,
            "position": np.int32,
            "layer": np.int32,
            "neuron": np.int32,
            "score": np.float32,
        }
    if result.attribution is not None:
        columns["attribution"] = np.float32
    if b is None:
        return pd.DataFrame({k: pd.Series(dtype=v) for k, v in columns.items()})
    scores = result.scores[b].float()
    shape = scores.shape
    flat = scores.reshape(-1)
    magnitude = torch.where(torch.isnan(flat), torch.full_like(flat, -1.0), flat.abs())
    if not torch.isfinite(flat[~torch.isnan(flat)]).all():
        raise NeuronmapError(
            f"context {cid}: non-finite scores (the model's outputs overflow in this dtype?)"
        )
    order = torch.sort(magnitude, descending=True, stable=True).indices
    valid = magnitude[order] >= (config.threshold if config.threshold is not None else 0.0)
    order = order[valid]
    if config.top_k is not None:
        order = order[: config.top_k]
    index = np.unravel_index(order.cpu().numpy(), shape)
    data: dict[str, Any] = {"context_id": np.full(len(order), cid)}
    if config.per_position:
        data["position"] = index[0]
    data["layer"] = np.asarray(layers)[index[-2]]
    data["neuron"] = index[-1]
    data["score"] = flat[order].cpu().numpy()
    if result.attribution is not None:
        data["attribution"] = result.attribution[b].float().reshape(-1)[order].cpu().numpy()
    return pd.DataFrame({k: np.asarray(v).astype(columns[k]) for k, v in data.items()})


def _finalize(
    st: Stage,
    n_parts: int,
    elapsed: float,
    truncated: dict[str, int] | None,
    memory: dict[str, Any],
    counts: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Merge the parts into the final tables, streaming, so memory is bounded by one part."""
    run = st.run
    parts_dir = run.path / PARTS
    ctx_parts = [parts_dir / f"contexts-{i:05d}.parquet" for i in range(n_parts)]
    score_parts = [parts_dir / f"scores-{i:05d}.parquet" for i in range(n_parts)]
    kept_n = dropped_n = 0
    known, p_target = [], []  # of the traced (kept) contexts: how well the model predicts their targets
    for source in ctx_parts:
        part = pq.read_table(source, columns=["kept", "known", "p_target"])
        flags = part["kept"].to_numpy()
        kept_n += int(flags.sum())
        dropped_n += int((~flags).sum())
        known.append(part["known"].to_numpy()[flags])
        p_target.append(part["p_target"].to_numpy()[flags])
    if kept_n == 0:
        run.clear()  # a rerun would find the same: nothing of this run is worth keeping
        raise NeuronmapError(
            f"none of the {dropped_n} contexts was kept: the model predicts none of their targets top-1 "
            "(use --keep all to trace them anyway)"
        )

    def rows(kept: bool) -> Callable[[pa.Table], pa.Table]:
        return lambda t: t.filter(pc.equal(t["kept"], kept)).drop_columns(["kept"])

    concat_parquet(ctx_parts, run.path / CONTEXTS, rows(True))
    concat_parquet(ctx_parts, run.path / DROPPED, rows(False))
    concat_parquet(score_parts, run.path / SCORES)
    totals = [
        read_parquet(s).groupby(["layer", "neuron"])["score"].agg(["sum", "count"]) for s in score_parts
    ]
    per_neuron = pd.concat(totals).groupby(level=[0, 1]).sum().reset_index()
    summary = summarize(kept_n, dropped_n, per_neuron, elapsed)
    summary["targets"] = target_summary(np.concatenate(known), np.concatenate(p_target))
    if truncated is not None:
        summary["truncated"] = truncated
    summary.update(counts or {})
    # Wall-clock values live in one field, ``timing``: everything else in run.json is the same on every run.
    timing = {k: summary.pop(k) for k in TIMING}
    # The memory plan depends on the memory free at the start, so it is kept with the times, not the summary.
    timing["memory"] = memory
    st.finish(summary=summary, timing=timing)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return {**summary, **{k: timing[k] for k in TIMING}}


# The summary's wall-clock entries (run.json keeps them in the stage's ``timing``).
TIMING = ("seconds", "contexts_per_second")


def summarize(kept: int, dropped: int, per_neuron: pd.DataFrame, elapsed: float) -> dict[str, Any]:
    """The trace summary; ``per_neuron`` has layer, neuron, sum (of scores) and count (of contexts)."""
    top = per_neuron.sort_values(["sum", "layer", "neuron"], ascending=[False, True, True]).head(10)
    return {
        "contexts_total": kept + dropped,
        "contexts_kept": kept,
        "contexts_dropped": dropped,
        "score_rows": int(per_neuron["count"].sum()),
        "neurons_with_scores": len(per_neuron),
        "seconds": round(elapsed, 2),
        "contexts_per_second": round((kept + dropped) / elapsed, 3) if elapsed > 0 else None,
        "top_neurons": [
            {
                "layer": int(r.layer),
                "neuron": int(r.neuron),
                "total_score": float(r.sum),
                "contexts": int(r.count),
            }
            for r in top.itertuples()
        ],
    }
