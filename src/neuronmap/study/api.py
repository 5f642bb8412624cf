"""``study_editability``: which facts are easy to edit, against the shape of their representation.

For each fact of the set: the neuron attribution at each subject token (which also says whether the model knows
the fact; facts it does not know are listed, not studied), causal tracing at each subject token alone (hidden,
mlp, attn) on every ``trace_every``-th layer. A fact's shape is measured at the subject token where it lives, the
one whose MLP restoration has the largest peak indirect effect (ties: the later token), and again at the last
subject token, ROME's convention (columns ending ``_last``); the statistics use the first. Then ROME at each sweep layer (the model's default layer among
them), and the flip norm at the default layer. Then the statistics and the report. Everything written goes
through ``neuronmap.rundir``'s atomic writers; ``run.json`` records the parameters, so a run is reproducible from it.
Wall-clock time is kept in one field, ``timing`` of the summary (``summary.json`` and the stage in ``run.json``):
the tables, the report and the figures are the same bytes on every run. Each fact's causal trace and edits are
kept in ``parts/`` as they are done, so a killed run started again with the same setting goes on from there
(the attribution, a minute or two, is redone) and ends with the files of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuronmap.edit.algorithm.context import context_prefixes
from neuronmap.edit.algorithm.request import Request
from neuronmap.edit.experiments.causal_trace import TraceSettings, subject_noise_std
from neuronmap.edit.hparams import load_hparams
from neuronmap.edit.prompts import opening_ids
from neuronmap.edit.scoring import mean_logprobs
from neuronmap.edit.stats import hparams_moments
from neuronmap.edit.window import check_prompts, check_request
from neuronmap.errors import NeuronmapError
from neuronmap.models.loader import LoadedModel, load_model
from neuronmap.progress import progress_bar
from neuronmap.rundir import (
    RunDir,
    atomic_write_json,
    atomic_write_parquet,
    json_text,
    kept,
    stage,
    start_with_parts,
)
from neuronmap.study import editability as ed
from neuronmap.study import parallel, report, shape
from neuronmap.study import stats as st
from neuronmap.study.config import RANK_MIN_P, check_study_options, inclusion
from neuronmap.study.facts import DEFAULT, StudyFact, load_study_facts
from neuronmap.study.profiles import causal_profiles, neuron_attribution

KINDS = ("hidden", "mlp", "attn")
SHAPE_MEASURES = (
    "mlp_peak_layer",
    "mlp_peak_effect",
    "mlp_entropy",
    "mlp_layers_above_half",
    "attn_peak_effect",
    "hidden_peak_effect",
    "neurons_50",
    "neurons_80",
    "gini",
    "p_clean",  # not a shape: the model's confidence, a control every correlation should be read against
)
EDIT_MEASURES = ("flip_norm", "efficacy_margin", "paraphrase", "neighborhood")
STUDY_TABLES = ("profiles", "sweep", "facts", "facts_unknown", "correlations")


def default_sweep(n_layers: int, edit_layer: int) -> list[int]:
    """Every third layer of the first 60% of the model, and the hparams' layer."""
    return sorted({*range(0, max(1, round(0.6 * n_layers)), 3), edit_layer})


def study_editability(
    model: LoadedModel | str,
    facts: str = DEFAULT,
    out: str | Path = "runs/study",
    *,
    limit: int | None = None,
    layers: Sequence[int] | None = None,
    trace_every: int = 3,
    samples: int = 5,
    noise: float = 3.0,
    steps: int = 6,
    prefixes: str = "bare",
    flip_mode: str = "scale",
    flip_iters: int = 8,
    hparams: str | None = None,
    multi_layer_min: float = 3,
    thick_min: float | None = None,
    n_boot: int = 2000,
    keep: str = "known",
    min_p: float = RANK_MIN_P,
    seed: int = 0,
    formats: Sequence[str] = ("png", "svg"),
    progress: bool = True,
    workers: int = 1,
) -> dict[str, Any]:
    """Run the study into ``out`` and return its summary (see the module docstring and the README); ``workers``
    processes edit the facts (``study.parallel``: the model is loaded again in each, by its name)."""
    start = time.perf_counter()
    check_study_options(
        keep=keep, min_p=min_p, flip_mode=flip_mode, prefixes=prefixes, trace_every=trace_every,
        samples=samples, steps=steps, flip_iters=flip_iters, n_boot=n_boot, noise=noise, workers=workers,
    )  # fmt: skip
    chosen = load_study_facts(facts, limit=limit, seed=seed)
    lm = load_model(model) if isinstance(model, str) else model
    hp = load_hparams(hparams, model=lm.spec).replace(v_num_grad_steps=steps)
    edit_layer = lm.adapter.check_layer(hp.resolve_layer(lm.n_layers))
    sweep = sorted({edit_layer, *(default_sweep(lm.n_layers, edit_layer) if layers is None else layers)})
    sweep = [lm.adapter.check_layer(la + lm.n_layers if la < 0 else la) for la in sweep]
    traced = sorted({*range(0, lm.n_layers, trace_every), lm.n_layers - 1})
    opening = opening_ids(lm.tokenizer, hp.document_start)
    for f in chosen:  # every prompt of the study against the model's window, before any model work
        where, targets = f"{facts}: fact {f.fact_id + 1} ({f.subject})", [f.target_true, f.target_new]
        check_request(lm, hp, Request(f.prompt, f.subject, f.target_new, f.target_true), where)
        check_prompts(lm, hp, f.paraphrases, targets, where, "a paraphrase prompt with its target")
        check_prompts(
            lm, hp, [p for p, _ in f.neighbours], targets, where, "a neighbourhood prompt with its target"
        )
    out = Path(out)
    with stage(RunDir(out), "study", resumable=True) as rec:
        # 1. neuron attribution at each subject token; the model's knowledge of each fact
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        attr, clean = neuron_attribution(lm, chosen, opening, progress=progress)
        timings["attribution"], clock = round(time.perf_counter() - clock, 1), time.perf_counter()
        unknown = [f for f in chosen if not clean[f.fact_id]["known"]]
        if keep == "rank":
            rank_check(lm, unknown, clean, opening, min_p)
        known = [f for f in chosen if _included(clean[f.fact_id], keep)]
        if len(known) < 2:
            raise NeuronmapError(
                f"the model knows {len(known)} of {len(chosen)} facts; the study needs at least 2 "
                "(raise --limit, or --keep all)"
            )
        # 2. causal tracing at each subject token
        settings = TraceSettings(
            kinds=KINDS,
            samples=samples,
            noise_std=subject_noise_std(lm, [f.subject for f in chosen], noise),
            seed=seed,
            layers=tuple(traced),
            document_start=hp.document_start,
            positions="subject",
        )
        # each fact's trace and edits are kept as they are done: a stopped study resumes (same setting only)
        parts = out / "parts"
        start_with_parts(rec, parts, {
            "model": lm.describe(),
            "facts": hashlib.sha256(json_text([asdict(f) for f in known]).encode()).hexdigest(),
            "trace": asdict(settings),
            "edits": {"hparams": hp.to_dict(), "sweep": sweep, "edit_layer": edit_layer, "prefixes": prefixes,
                      "flip": [flip_mode, flip_iters]},
        })  # fmt: skip
        profiles, corrupted = causal_profiles(lm, known, settings, progress=progress, parts=parts)
        timings["causal_trace"], clock = round(time.perf_counter() - clock, 1), time.perf_counter()
        # 3. ROME at every sweep layer (statistics collected once per layer, cached), the flip norm at the default
        stats = {}
        if hp.mom2_adjustment:
            stats = hparams_moments(lm, hp, sweep, progress)
        setup = ed.EditSetup(hp, [""] if prefixes == "bare" else context_prefixes(lm, hp), stats, opening)
        plan = ed.SweepPlan(setup, tuple(sweep), edit_layer, (flip_mode, flip_iters))
        sweep_rows, flips = _edit_all(lm, known, plan, progress, parts, workers)
        timings["edits"], clock = round(time.perf_counter() - clock, 1), time.perf_counter()
        # 4. tables (written first: the measurements outlive a failure below), statistics, report
        atomic_write_parquet(profiles, out / "profiles.parquet")
        atomic_write_parquet(pd.DataFrame(sweep_rows), out / "sweep.parquet")
        table = _fact_table(known, attr, clean, profiles, corrupted, sweep_rows, flips, edit_layer)
        thick = float(table["neurons_80"].median()) if thick_min is None else thick_min
        params = {
            "model": lm.spec,
            "facts": facts,
            "limit": limit,
            "keep": keep,
            "min_p": min_p if keep == "rank" else None,
            "sweep_layers": sweep,
            "edit_layer": edit_layer,
            "traced_layers": traced,
            "samples": samples,
            "window": settings.window,
            "noise": noise,
            "noise_std": settings.noise_std,
            "steps": steps,
            "prefixes": prefixes,
            "flip_mode": flip_mode,
            "flip_iters": flip_iters,
            "flip_range": [ed.FLIP_LOW, hp.clamp_norm_factor],
            "hparams": hp.to_dict(),
            "multi_layer_min": multi_layer_min,
            "thick_min": thick,
            "thick_rule": "given" if thick_min is not None else "median of neurons_80 over the studied facts",
            "bootstrap": n_boot,
            "seed": seed,
        }
        counts = {"facts": len(chosen), "studied": len(known), "unknown": len(unknown)}
        summary = _analyse(
            out, table, profiles, _unknown_table(unknown, clean, keep), params, counts, formats
        )
        timings["statistics_and_report"] = round(time.perf_counter() - clock, 1)
        summary["timing"] = {**timings, "seconds": round(time.perf_counter() - start, 1)}
        atomic_write_json(summary, out / "summary.json")
        rec.params = params  # known once the facts are studied (the thickness rule may take their median)
        rec.wrote(
            *(f"{t}.parquet" for t in STUDY_TABLES), "summary.json", *summary["report"], *summary["figures"]
        )
        rec.finish(model=lm.describe(), summary=summary)
        shutil.rmtree(parts, ignore_errors=True)
    # the run time, as other stages give it
    return {**_whole_paths(out, summary), "seconds": summary["timing"]["seconds"]}


def study_report(out: str | Path, formats: Sequence[str] = ("png", "svg")) -> dict[str, Any]:
    """Make the statistics, report, figures and ``summary.json`` of the finished study in ``out`` again from its
    tables and recorded parameters, with no model work: what this version's statistics and conclusion say of a
    study that took hours (its measurements are kept; classes, correlations, tests and report are recomputed, the
    same bytes when nothing changed). The summary keeps the study's ``timing``; ``run.json`` records the stage
    ``study_report``."""
    out = Path(out)
    run = RunDir(out)
    if not run.exists():
        raise NeuronmapError(
            f"{out}: not a run folder (no run.json); run `neuronmap study editability` first"
        )
    params = run.require_stage("study")["params"]
    inputs = ("summary.json", "facts.parquet", "profiles.parquet", "facts_unknown.parquet")
    missing = [name for name in inputs if not (out / name).is_file()]
    if missing:
        raise NeuronmapError(f"{out}: the finished study's {', '.join(missing)} missing: run the study again")
    before = json.loads((out / "summary.json").read_text())
    with stage(run, "study_report", {"formats": list(formats)}) as rec:
        start = time.perf_counter()
        summary = _analyse(
            out,
            pd.read_parquet(out / "facts.parquet"),
            pd.read_parquet(out / "profiles.parquet"),
            pd.read_parquet(out / "facts_unknown.parquet"),
            params,
            {k: before[k] for k in ("facts", "studied", "unknown")},
            formats,
        )
        summary["timing"] = before["timing"]
        atomic_write_json(summary, out / "summary.json")
        remade = ("facts.parquet", "facts_unknown.parquet", "correlations.parquet", "summary.json")
        rec.wrote(*remade, *summary["report"], *summary["figures"])
        rec.finish(seconds=round(time.perf_counter() - start, 1))
    return _whole_paths(out, summary)


def _whole_paths(out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as the caller gets it: report and figure paths whole (the files keep them relative to ``out``)."""
    return {
        **summary,
        "report": [str(out / p) for p in summary["report"]],
        "figures": [str(out / p) for p in summary["figures"]],
    }


def _analyse(
    out: Path,
    table: pd.DataFrame,
    profiles: pd.DataFrame,
    unknown_table: pd.DataFrame,
    params: dict[str, Any],
    counts: dict[str, int],
    formats: Sequence[str],
) -> dict[str, Any]:
    """The study's last step, from its measurements: shape classes, the facts and unknown-facts tables,
    correlations, the best-layer and class tests, the report and figures; the summary (without ``timing``)."""
    given = params["thick_min"] if params["thick_rule"] == "given" else None
    axes = shape.Axes(params["multi_layer_min"], given)
    table["shape_class"] = [
        shape.classify(a, n, axes, params["thick_min"])
        for a, n in zip(table["mlp_layers_above_half"], table["neurons_80"], strict=True)
    ]
    atomic_write_parquet(table, out / "facts.parquet")
    atomic_write_parquet(unknown_table, out / "facts_unknown.parquet")
    n_boot, seed, sweep = params["bootstrap"], params["seed"], params["sweep_layers"]
    corr = st.correlations(table, SHAPE_MEASURES, EDIT_MEASURES, n_boot=n_boot, seed=seed)
    agreement = {
        kind: st.layer_agreement(table[f"{kind}_peak_layer"], table["best_layer"], sweep, n_boot, seed)
        for kind in KINDS
    }
    atomic_write_parquet(corr, out / "correlations.parquet")
    summary: dict[str, Any] = {
        **counts,
        "keep": params["keep"],
        "inclusion": inclusion(params["keep"], params["min_p"] or RANK_MIN_P),
        "agreement": agreement,
        "classes": st.class_test(table, "shape_class", "flip_norm"),
        "axes": axes.describe(params["thick_min"]),
    }
    summary.update(
        report.write_report(
            out, table, profiles, corr, summary, params, unknown_table, SHAPE_MEASURES, EDIT_MEASURES, formats
        )
    )
    return summary


def _edit_all(
    lm: LoadedModel,
    facts: Sequence[StudyFact],
    plan: ed.SweepPlan,
    progress: bool,
    parts: Path | None = None,
    workers: int = 1,
) -> tuple[list[dict[str, Any]], dict[int, tuple[float, str]]]:
    """Each fact edited by ``plan``; each fact's edits kept in ``parts`` as they are done (``rundir.kept``), by
    ``workers`` processes when more than one (``study.parallel``)."""
    rows, flips = [], {}
    with progress_bar("edits", total=len(facts) * len(plan.sweep), unit="edit", enabled=progress) as bar:
        if workers > 1 and parts is not None:
            parallel.edit_in_workers(lm, facts, plan, parts, workers, bar)
        for f in facts:
            part = None if parts is None else ed.edits_part(parts, f)
            if workers == 1 and part is not None and part.is_file():
                bar.skip(len(plan.sweep))
            table, (norm, status) = kept(part, partial(ed.edit_fact, lm, f, plan, bar.advance))
            rows += table.to_dict("records")
            flips[f.fact_id] = (norm, status)
    return rows, flips


def live_index(profile: pd.DataFrame) -> int:
    """The subject token where a fact lives: the one whose MLP restoration has the largest peak indirect effect
    over the traced layers (ties: the later token, the side of ROME's last-token convention)."""
    peaks = profile[profile["kind"] == "mlp"].groupby("subject_index")["indirect"].max()
    return int(max(i for i, v in peaks.items() if v == peaks.max()))


def _fact_table(
    facts: Sequence[StudyFact],
    attr: dict[int, np.ndarray],
    clean: dict[int, dict[str, float]],
    profiles: pd.DataFrame,
    corrupted: pd.DataFrame,
    sweep_rows: list[dict[str, Any]],
    flips: dict[int, tuple[float, str]],
    edit_layer: int,
) -> pd.DataFrame:
    sweep = pd.DataFrame(sweep_rows)
    rows = []
    for f in facts:
        row: dict[str, Any] = {
            "fact_id": f.fact_id,
            "seed": f.seed or "",
            "relation": f.relation or "",
            "prompt": f.text,
            "target_true": f.target_true,
            "target_new": f.target_new,
            "p_clean": clean[f.fact_id]["p_true"],
        }
        mine = profiles[profiles["fact_id"] == f.fact_id]
        live, last = live_index(mine), int(mine.loc[mine["last"], "subject_index"].iloc[0])
        tokens = mine.drop_duplicates("subject_index").set_index("subject_index")["token"]
        row |= {"live_index": live, "live_token": str(tokens[live]), "live_is_last": live == last}
        for suffix, index in (("", live), ("_last", last)):
            at = mine[mine["subject_index"] == index]
            for kind in KINDS:
                sel = at[at["kind"] == kind].sort_values("layer")
                measures = shape.layer_profile(sel["indirect"].to_numpy(), sel["layer"].to_numpy())
                row.update({f"{kind}_{k}{suffix}": v for k, v in measures.items()})
            row.update({f"{k}{suffix}": v for k, v in shape.neuron_breadth(attr[f.fact_id][index]).items()})
        edits = sweep[sweep["fact_id"] == f.fact_id]
        at_default = edits[edits["layer"] == edit_layer].iloc[0]
        for k in (
            "efficacy_margin",
            "efficacy",
            "paraphrase",
            "paraphrase_margin",
            "neighborhood",
            "rewrite_score",
        ):
            row[k] = float(at_default[k])
        row["flip_norm"], row["flip_status"] = flips[f.fact_id]
        best = edits.loc[edits["generalization_margin"].idxmax()]
        row["best_layer"] = int(best["layer"])
        row["best_layer_margin"] = float(best["generalization_margin"])
        rows.append(row)
    table = pd.DataFrame(rows)
    return table.merge(corrupted.rename(columns={"p_clean": "p_clean_trace"}), on="fact_id", how="left")


def rank_check(
    lm: LoadedModel,
    facts: Sequence[StudyFact],
    clean: dict[int, dict[str, float]],
    opening: Sequence[int],
    min_p: float,
) -> None:
    """For facts the model does not predict top-1: P(true) and P(new) on the prompt (exp of the mean log-probability
    per target token, as CounterFact compares them), and whether the true target ranks above the new one with
    P(true) >= ``min_p`` (``ranked``), added to ``clean``."""
    if not facts:
        return
    texts = [f.text for f in facts]
    p_true = mean_logprobs(lm, texts, [f.target_true for f in facts], opening=opening).exp()
    p_new = mean_logprobs(lm, texts, [f.target_new for f in facts], opening=opening).exp()
    for f, t, n in zip(facts, p_true.tolist(), p_new.tolist(), strict=True):
        clean[f.fact_id] |= {"p_true_token": t, "p_new_token": n, "ranked": t > n and t >= min_p}


def _included(check: dict[str, Any], keep: str) -> bool:
    return check["known"] or keep == "all" or (keep == "rank" and bool(check.get("ranked")))


def _unknown_table(facts: Sequence[StudyFact], clean: dict[int, dict[str, Any]], keep: str) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "fact_id": [f.fact_id for f in facts],
            "seed": [f.seed or "" for f in facts],
            "prompt": [f.text for f in facts],
            "target_true": [f.target_true for f in facts],
            # the whole target's probability (exp of its summed log-probability), as the facts table's p_clean
            "p_true": [clean[f.fact_id]["p_true"] for f in facts],
            # per token (exp of the mean log-probability), what --keep rank compares; NaN without --keep rank
            "p_true_token": [clean[f.fact_id].get("p_true_token", np.nan) for f in facts],
            "p_new_token": [clean[f.fact_id].get("p_new_token", np.nan) for f in facts],
            "reason": ["the model's top prediction is not the true target"] * len(facts),
            "studied": [_included(clean[f.fact_id], keep) for f in facts],
        }
    )
