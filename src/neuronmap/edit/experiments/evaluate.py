"""CounterFact-style evaluation of ROME and MEMIT (the ROME paper's section 4.2), per fact and averaged.

For each record: the unedited model is scored, the edit is computed and applied, the edited model is scored,
and the edit is undone (each edit is evaluated alone, on the original weights). With ``batch`` N, records go in
groups of N, edited together as MEMIT's evaluation does: MEMIT writes the group in one edit; ROME edits them one
after another, each computed on the model with the group's earlier edits (as MEMIT's code applies ROME to several
requests); the group is scored, then undone. Metrics, each for the edited and the unedited model:

- efficacy: P(new) > P(true) on the rewrite prompt; paraphrase: the same, averaged over paraphrase prompts;
  neighbourhood: P(true) > P(new) on prompts about other subjects with the same true object;
- their magnitudes (mean P(new) - P(true), and P(true) - P(new) for neighbourhood);
- score: the harmonic mean of efficacy, paraphrase and neighbourhood;
- fluency: ROME's weighted 2-/3-gram entropy of sampled generations from the generation prompts.

P is exp(mean log-probability per target token), as in ROME's code. With ``document_start`` in the hparams,
every prompt (scored or sampled) opens a document, as the edit itself saw it. Several ``layers`` make a ROME layer sweep: each
record is edited at each layer, sharing the unedited scores, the prefixes and one pass of statistics; for MEMIT
they are the range it edits together.

Given ``parts`` (a folder), each group's rows are written there as it is done, and a group whose part is found is
read instead of edited again: a killed evaluation resumes where it stopped, with the rows an uninterrupted one
gives (fluency is seeded per record, not by position in the run).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd

from neuronmap.edit.algorithm.context import context_prefixes
from neuronmap.edit.algorithm.edit import Edit, rome
from neuronmap.edit.algorithm.memit import memit, z_cache
from neuronmap.edit.algorithm.memit_edit import MemitEdit
from neuronmap.edit.dsets.counterfact import Record
from neuronmap.edit.experiments.fluency import generate, ngram_entropy, record_seed
from neuronmap.edit.hparams import EditHparams, MemitHparams, RomeHparams, check_batch, load_edit_hparams
from neuronmap.edit.prompts import opening_ids
from neuronmap.edit.scoring import mean_logprobs
from neuronmap.edit.stats import hparams_moments
from neuronmap.edit.window import check_fits, check_prompts, check_request, token_count
from neuronmap.errors import NeuronmapError
from neuronmap.models.loader import LoadedModel
from neuronmap.models.memory import Budget, format_bytes, memory_budget
from neuronmap.progress import Bar, progress_bar
from neuronmap.rundir import kept

METRICS = ("efficacy", "paraphrase", "neighborhood")
SUMMARY = (
    *METRICS,
    "score",
    "fluency",
    "efficacy_magnitude",
    "paraphrase_magnitude",
    "neighborhood_magnitude",
)


@dataclass
class Evaluation:
    results: pd.DataFrame  # one row per (record, layer)
    summary: dict[str, Any]


def record_metrics(
    lm: LoadedModel, record: Record, batch_size: int = 32, opening: Sequence[int] = ()
) -> dict[str, float]:
    """Efficacy, paraphrase and neighbourhood (and magnitudes, and the rewrite prompt's P) of the model now."""
    req = record.request
    groups = {
        "efficacy": [req.text],
        "paraphrase": list(record.paraphrase_prompts),
        "neighborhood": list(record.neighborhood_prompts),
    }
    prompts = [p for group in groups.values() for p in group]
    new = mean_logprobs(lm, prompts, [req.target_new] * len(prompts), batch_size, opening).exp()
    true = mean_logprobs(lm, prompts, [record.target_true] * len(prompts), batch_size, opening).exp()
    out: dict[str, float] = {"p_new": float(new[0]), "p_true": float(true[0])}
    start = 0
    for name, group in groups.items():
        n, t = new[start : start + len(group)], true[start : start + len(group)]
        start += len(group)
        if not group:
            out[name] = out[f"{name}_magnitude"] = float("nan")
            continue
        sign = -1.0 if name == "neighborhood" else 1.0  # neighbourhood: the true object should stay ahead
        out[name] = float(((n - t) * sign > 0).float().mean())
        out[f"{name}_magnitude"] = float(((n - t) * sign).mean())
    return out


@dataclass(frozen=True)
class RecordSize:
    """The longest input (in tokens) of each kind of pass a record's evaluation runs."""

    rewrite: int  # a context prefix, the rewrite prompt and a target: ROME's value optimisation
    targets: int  # the longer target (logits are read at its tokens only)
    scored: int  # a scored prompt with its target
    generation: int  # a generation prompt with its new tokens (0: no generation)
    n_generation: int  # generation prompts, run as one batch


def check_record(lm: LoadedModel, hp: EditHparams, record: Record, gen_length: int, where: str) -> RecordSize:
    """Every prompt a record's evaluation runs, against the model's window (before any model work)."""
    targets = [record.request.target_new, record.target_true]
    rewrite = check_request(lm, hp, record.request, where)
    scored = max(
        check_prompts(lm, hp, [record.request.text], targets, where, "the rewrite prompt with its target"),
        check_prompts(
            lm, hp, record.paraphrase_prompts, targets, where, "a paraphrase prompt with its target"
        ),
        check_prompts(
            lm, hp, record.neighborhood_prompts, targets, where, "a neighbourhood prompt with its target"
        ),
    )
    generation = 0
    if gen_length:
        what = f"a generation prompt sampled to {gen_length} tokens"
        opening = len(opening_ids(lm.tokenizer, hp.document_start))
        # sampled to gen_length tokens in all, the prompt's counted, and at least one new token
        generation = max(
            (check_fits(lm, p, opening + max(1, gen_length - token_count(lm, p)), where, what)
             for p in record.generation_prompts),
            default=0,
        )  # fmt: skip
    n_targets = max(token_count(lm, " " + t, special=False) for t in targets)
    n_generation = len(record.generation_prompts) if generation else 0
    return RecordSize(rewrite, n_targets, scored, generation, n_generation)


def plan_memory(
    lm: LoadedModel,
    hp: EditHparams,
    sizes: Sequence[tuple[str, RecordSize]],
    layers: Sequence[int],
    batch_size: int,
    budget: Budget,
) -> int:
    """The scoring batch size that fits ``budget`` (``batch_size`` halved as needed); a record whose edit or
    generations alone would not fit is refused, naming it, before any model work. An edit's backward pass reaches
    down to its layer; its rows are the bare prompt, the context prefixes and the KL prompt."""
    fp = lm.footprint
    edit_rows = 2 + sum(count for _, count in hp.context_template_length_params)
    for where, size in sizes:
        edit = fp.pass_bytes(edit_rows, size.rewrite, fp.n_layers - min(layers), size.targets)
        generate = fp.pass_bytes(size.n_generation, size.generation) if size.generation else 0
        for what, need in (("the edit", edit), ("the generations", generate)):
            if need > budget.bytes:
                hint = " or a smaller --gen-length" if what == "the generations" else ""
                raise NeuronmapError(
                    f"{where}: {what} need about {format_bytes(need)}, more than the {budget.describe()}; try a "
                    f"larger --max-memory{hint}"
                )
    longest = max((size.scored for _, size in sizes), default=1)
    targets = max((size.targets for _, size in sizes), default=1)
    rows = batch_size
    while rows > 1 and fp.pass_bytes(rows, longest, 0, targets) > budget.bytes:
        rows //= 2
    need = fp.pass_bytes(rows, longest, 0, targets)
    if need > budget.bytes:
        where = next(w for w, size in sizes if size.scored == longest)
        raise NeuronmapError(
            f"{where}: scoring a prompt of {longest} tokens needs about {format_bytes(need)}, more than the "
            f"{budget.describe()}; try a larger --max-memory"
        )
    return rows


def fluency(
    lm: LoadedModel, record: Record, gen_length: int, seed: int, opening: Sequence[int] = ()
) -> float:
    if not record.generation_prompts:
        return float("nan")
    texts = generate(lm, record.generation_prompts, gen_length, seed=seed, opening=opening)
    return statistics.fmean(ngram_entropy(t) for t in texts)


def _hmean(values: Sequence[float]) -> float:
    if any(v != v for v in values):  # NaN
        return float("nan")
    return 0.0 if min(values) <= 0 else statistics.harmonic_mean(values)


def summarise(rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Means over records of each metric, for the edited and the unedited model; score from the means."""
    out: dict[str, dict[str, float]] = {}
    for name in SUMMARY:
        if name == "score":
            continue
        out[name] = {
            state: float(rows[f"{name}_{suffix}"].mean())
            for state, suffix in (("edited", "post"), ("unedited", "pre"))
            if f"{name}_{suffix}" in rows
        }
    out["score"] = {state: _hmean([out[m][state] for m in METRICS]) for state in ("edited", "unedited")}
    return out


def evaluate(
    lm: LoadedModel,
    records: Sequence[Record],
    hparams: EditHparams | str | None = None,
    *,
    algorithm: str = "rome",
    batch: int = 1,
    layers: Sequence[int] | None = None,
    with_fluency: bool = True,
    gen_length: int = 100,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = True,
    source: str = "records",
    max_memory: str | int | None = None,
    parts: Path | None = None,
    on_start: Callable[[], object] | None = None,
) -> Evaluation:
    """Edit the records (``batch`` at a time; with ROME at each of ``layers``, default the hparams' layer; with
    MEMIT over the range ``layers``, default the hparams') and score them before and after. ``algorithm`` names
    the hparams file when ``hparams`` is not an hparams object. Every record is checked against the model's window
    and ``max_memory`` first (``source`` names the records in those messages); the scoring batches shrink below
    ``batch_size`` where they would not fit. ``parts``: a folder where each group's rows are kept as they are done
    and read back on a rerun (see the module docstring); ``on_start`` is called once the checks have passed,
    before the first edit."""
    start_time = time.perf_counter()
    if isinstance(hparams, RomeHparams | MemitHparams):
        hp: EditHparams = hparams
    else:
        hp = load_edit_hparams(algorithm, hparams, model=lm.spec)
    check_batch(batch)
    settings = _settings(lm, hp, layers)
    edited = sorted({layer for setting in settings for layer in setting})
    sizes = []
    for record in records:
        where = f"{source}: case {record.case_id}"
        sizes.append((where, check_record(lm, hp, record, gen_length if with_fluency else 0, where)))
    batch_size = plan_memory(lm, hp, sizes, edited, batch_size, memory_budget(max_memory, lm.device))
    stats: dict[int, Any] = {}
    if hp.mom2_adjustment:
        stats = hparams_moments(lm, hp, edited, progress)
    grouped = isinstance(hp, MemitHparams) or batch > 1  # rows and summary say how records were edited
    plan = _Plan(hp, settings, stats, context_prefixes(lm, hp), opening_ids(lm.tokenizer, hp.document_start),
                 batch_size, gen_length if with_fluency else 0, seed, grouped)  # fmt: skip
    rows: list[dict[str, Any]] = []
    diagnostics: list[dict[str, Any]] = []
    if on_start is not None:
        on_start()
    with progress_bar("edit-eval", total=len(records) * len(settings), unit="edit", enabled=progress) as bar:
        for index, group in enumerate(_groups(records, batch)):
            part = None if parts is None else parts / f"group-{index:05d}.parquet"
            if part is not None and part.is_file():
                bar.skip(len(group) * len(settings))
            table, extra = kept(part, partial(_edit_group, lm, group, index, plan, bar))
            rows += table.to_dict("records")
            diagnostics += extra
    results = pd.DataFrame(rows)
    keys = [_key(setting) if grouped else str(setting[-1]) for setting in settings]
    by_layer = {
        key: summarise(results[results["layer"] == s[-1]]) for key, s in zip(keys, settings, strict=True)
    }
    first = by_layer[keys[0]]
    summary: dict[str, Any] = {
        **{name: first[name] for name in SUMMARY},
        "records": len(records),
        "layers": settings[0] if isinstance(hp, MemitHparams) else [s[-1] for s in settings],
        "by_layer": by_layer,
        "model": lm.describe(),
        "hparams": hp.to_dict(),
        "fluency_length": gen_length if with_fluency else None,
        "stats_tokens": {str(k): v.n_tokens for k, v in stats.items()},
        "seconds": round(time.perf_counter() - start_time, 1),
    }
    if grouped:
        summary |= {"algorithm": hp.ALGORITHM.lower(), "batch": batch}
    if diagnostics:
        summary["memit"] = diagnostics
    return Evaluation(results, summary)


@dataclass
class _Plan:
    """How every group of records is edited and scored."""

    hp: EditHparams
    settings: list[list[int]]
    stats: dict[int, Any]
    prefixes: list[str]
    opening: Sequence[int]
    batch_size: int
    length: int  # fluency's generation length; 0: no fluency
    seed: int
    grouped: bool


def _edit_group(
    lm: LoadedModel, group: list[Record], index: int, plan: _Plan, bar: Bar
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The ``index``-th group's rows (one per record and setting) and MEMIT's diagnostics; the model is left as
    it was. MEMIT's target searches are kept in the model's shared ``z_cache`` (a group of hundreds resumes
    within; a later run with the same records and search settings reuses them)."""
    rows, diagnostics = [], []
    # a group of many records is one long step of the bar: its own bar counts the records scored and edited
    steps = len(group) * (1 + 2 * len(plan.settings))
    with bar.subtask(f"group {index + 1}", steps, "step") if len(group) > 1 else nullcontext(Bar()) as sub:
        pre, fl_pre = _score(lm, group, plan.batch_size, plan.opening, plan.length, plan.seed, sub.advance)
        done = []
        for setting in plan.settings:
            edits = _apply(lm, group, plan.hp, setting, plan.stats, plan.prefixes, sub.advance)
            try:
                scored = _score(lm, group, plan.batch_size, plan.opening, plan.length, plan.seed, sub.advance)
            finally:
                for e in reversed(edits):
                    e.undo()
            done.append((setting, edits, *scored))
    for setting, edits, post, fl_post in done:
        for j, record in enumerate(group):
            row = {
                "case_id": str(record.case_id),
                "layer": setting[-1],
                "subject": record.request.subject,
                "relation": record.relation,
                "prompt": record.request.text,
                "target_true": record.target_true,
                "target_new": record.request.target_new,
                **{f"{k}_pre": v for k, v in pre[j].items()},
                **{f"{k}_post": v for k, v in post[j].items()},
                "fluency_pre": fl_pre[j],
                "fluency_post": fl_post[j],
                **_edit_info(edits, j),
            }
            row["score_pre"] = _hmean([pre[j][m] for m in METRICS])
            row["score_post"] = _hmean([post[j][m] for m in METRICS])
            if plan.grouped:
                row |= {"algorithm": plan.hp.ALGORITHM.lower(), "layers": _key(setting), "batch": index,
                        "batch_size": len(group)}  # fmt: skip
            rows.append(row)
        if isinstance(edits[0], MemitEdit):
            info = edits[0].info
            diagnostics.append({"batch": index, "layers": setting, "records": len(group),
                                **{k: info[k] for k in ("z_gap", "z_gap_after", "update_norm")}})  # fmt: skip
        bar.advance(len(group))
    return pd.DataFrame(rows), diagnostics


def _score(
    lm: LoadedModel,
    group: list[Record],
    batch_size: int,
    opening: Sequence[int],
    gen_length: int,
    seed: int,
    advance: Callable[[], object],
) -> tuple[list[dict[str, float]], list[float]]:
    """Each record's metrics and fluency (NaN with ``gen_length`` 0) on the model as it is now; ``advance`` after
    each record."""
    metrics, fluent = [], []
    for record in group:
        metrics.append(record_metrics(lm, record, batch_size, opening))
        s = record_seed(seed, record.case_id)
        fluent.append(fluency(lm, record, gen_length, s, opening) if gen_length else float("nan"))
        advance()
    return metrics, fluent


def _settings(lm: LoadedModel, hp: EditHparams, layers: Sequence[int] | None) -> list[list[int]]:
    """What one record is edited with, in turn: ROME one layer each (a sweep), MEMIT one range."""
    if isinstance(hp, MemitHparams):
        chosen = hp.replace(layers=tuple(layers)) if layers else hp
        return [[lm.adapter.check_layer(layer) for layer in chosen.resolve_layers(lm.n_layers)]]
    single = list(layers) if layers else [hp.resolve_layer(lm.n_layers)]
    return [[lm.adapter.check_layer(layer + lm.n_layers if layer < 0 else layer)] for layer in single]


def _groups(records: Sequence[Record], size: int) -> Iterator[list[Record]]:
    for start in range(0, len(records), size):
        yield list(records[start : start + size])


def _key(layers: Sequence[int]) -> str:
    return ",".join(str(layer) for layer in layers)


def _apply(
    lm: LoadedModel,
    group: list[Record],
    hp: EditHparams,
    layers: list[int],
    stats: dict[int, Any],
    prefixes: list[str],
    advance: Callable[[], object],
) -> list[Edit | MemitEdit]:
    """The group's edits, computed and applied (undo them in reverse order); MEMIT's target searches kept in the
    model's ``z_cache`` (see ``memit``); ``advance`` after each record's search or edit."""
    if isinstance(hp, MemitHparams):
        requests = [record.request for record in group]
        found = memit(
            lm, requests, hp, layers=layers, stats=stats, prefixes=prefixes, keep=z_cache(lm), advance=advance
        )
        return [found.apply()]
    done: list[Edit | MemitEdit] = []
    try:
        for record in group:  # one after another: each on the model with the earlier ones
            done.append(
                rome(
                    lm, record.request, hp, layer=layers[0], stats=stats.get(layers[0]), prefixes=prefixes
                ).apply()
            )
            advance()
    except BaseException:
        for e in reversed(done):
            e.undo()
        raise
    return done


def _edit_info(edits: list[Edit | MemitEdit], j: int) -> dict[str, Any]:
    """What the edit of the group's ``j``-th record reports: value-search steps, |delta|, P(new) it reached."""
    if isinstance(edits[0], MemitEdit):
        info = edits[0].info
        return {
            "steps": info["steps"][j],
            "delta_norm": info["delta_norm"][j],
            "p_new_optimised": info["p_new"][j],
        }
    info = edits[j].info
    return {
        "steps": info["steps"],
        "delta_norm": info["delta_norm"],
        "p_new_optimised": info["losses"][-1]["p_new"],
    }
