"""What the CLI commands do, as functions: load, run, write files, return a summary to print.

Every table is written atomically (``neuronmap.rundir``); each output folder is a run directory whose ``run.json``
holds the stage's record, as the trace stage's does.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from neuronmap.edit.dsets import Fact, load_facts, load_records
from neuronmap.errors import NeuronmapError
from neuronmap.models.loader import LoadedModel
from neuronmap.rundir import RunDir, atomic_write_json, atomic_write_parquet, stage, start_with_parts

NOISE_FACTS = "builtin:facts"


def run_causal_trace(
    out: str | Path,
    lm: LoadedModel,
    *,
    prompt: str | None = None,
    subject: str | None = None,
    target: str | None = None,
    facts: str | None = None,
    limit: int | None = None,
    kinds: Sequence[str] = ("hidden", "mlp", "attn"),
    layers: Sequence[int] | None = None,
    window: int = 10,
    samples: int = 10,
    noise: float = 3.0,
    noise_facts: str | None = None,
    seed: int = 0,
    keep: str = "auto",
    document_start: bool | None = None,
    formats: Sequence[str] = ("png", "svg"),
    max_memory: str | int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Trace one prompt (``prompt``/``subject``) or a set (``facts``) into ``out``; see the module docstring of
    ``experiments.causal_trace``. ``document_start`` None takes the model's ROME hparams. ``noise`` is a multiple of the std of the subject embeddings of
    ``noise_facts`` (default: the traced set, or builtin:facts for one prompt)."""
    from neuronmap.edit.experiments.causal_trace import (
        TraceSettings,
        average_by_class,
        check_fact,
        trace_fact,
    )
    from neuronmap.edit.experiments.figures import average_heatmap, fact_heatmap
    from neuronmap.edit.hparams import load_hparams
    from neuronmap.models.memory import memory_budget
    from neuronmap.progress import progress_bar
    from neuronmap.trace.targets import target_summary

    start = time.perf_counter()
    if (prompt is None) == (facts is None):
        raise NeuronmapError("give either --prompt with --subject (one fact) or --facts SET")
    if keep not in ("auto", "known", "all"):
        raise NeuronmapError(f"--keep takes known, all or auto, got {keep!r}")
    if prompt is not None:
        if subject is None:
            raise NeuronmapError("--prompt needs --subject")
        from neuronmap.edit.prompts import check_template

        check_template(prompt, subject)
        if target is not None and not target.strip():
            raise NeuronmapError("--target is empty (leave it out to trace the model's own prediction)")
        chosen, builtin = [Fact(0, prompt, subject, target, where="--prompt")], False
    else:
        chosen, builtin = load_facts(str(facts), limit=limit, seed=seed)
    if noise < 0:
        raise NeuronmapError("--noise must not be negative")
    noise_source = noise_facts or (facts if facts is not None else NOISE_FACTS)
    settings = TraceSettings(
        kinds=tuple(kinds),
        layers=None if layers is None else tuple(layers),
        window=window,
        samples=samples,
        noise_std=noise * _subject_std(lm, noise_source),
        seed=seed,
        document_start=load_hparams(model=lm.spec).document_start
        if document_start is None
        else document_start,
    )
    budget = memory_budget(max_memory, lm.device)
    for fact in chosen:  # each prompt against the model's window and the memory, before any model work
        check_fact(lm, fact, settings, budget)
    keep_known = keep == "known" or (keep == "auto" and facts is not None and builtin)
    traces, dropped = [], 0
    with progress_bar(
        "causal trace", total=len(chosen), unit="fact", enabled=progress and len(chosen) > 1
    ) as bar:
        for fact in chosen:
            tr = trace_fact(lm, fact, settings, progress=progress and len(chosen) == 1, budget=budget)
            bar.advance()
            if keep_known and not tr.known:
                dropped += 1
                continue
            traces.append(tr)
    if not traces:
        raise NeuronmapError("no fact was kept: the model predicts none of their targets (try --keep all)")
    out = Path(out)
    params = {
        "prompt": prompt,
        "subject": subject,
        "target": target,
        "facts": facts,
        "limit": limit,
        "layers": None if layers is None else list(layers),
        "keep": keep,
        "seed": seed,
        "document_start": settings.document_start,
    }
    with stage(RunDir(out), "causal_trace", params) as st:
        table = pd.concat([tr.table.assign(fact_id=tr.fact.fact_id) for tr in traces], ignore_index=True)[
            ["fact_id", "kind", "layer", "position", "token", "effect", "indirect"]
        ]
        atomic_write_parquet(table, out / "causal_trace.parquet")
        atomic_write_parquet(_facts_table(traces), out / "facts.parquet")
        figures: list[Path] = []
        average = None
        if len(traces) > 1:
            average = average_by_class(traces)
            atomic_write_parquet(average, out / "causal_trace_average.parquet")
            if formats:
                figures = average_heatmap(average, out / "figures" / "average", len(traces), formats)
        elif formats:
            figures = fact_heatmap(traces[0], out / "figures" / f"fact_{traces[0].fact.fact_id}", formats)
        summary = {
            "facts": len(traces),
            "facts_dropped": dropped,
            "kinds": list(settings.kinds),
            "window": settings.window,
            "samples": settings.samples,
            "noise": noise,
            "noise_std": settings.noise_std,
            "noise_facts": noise_source,
            "p_clean_mean": float(pd.Series([t.p_clean for t in traces]).mean()),
            # how many traced targets the model does not predict top-1 (trace.targets: the rule and the record)
            "targets": target_summary([t.known for t in traces], [t.p_clean for t in traces]),
            "p_corrupted_mean": float(pd.Series([t.p_corrupted for t in traces]).mean()),
            "peaks": _peaks(traces, average),
            "figures": [str(p) for p in figures],
            "seconds": round(time.perf_counter() - start, 1),
        }
        stored = _timed(summary)
        atomic_write_json(stored, out / "causal_trace_summary.json")
        st.wrote("causal_trace.parquet", "facts.parquet", "causal_trace_summary.json", *figures)
        if average is not None:
            st.wrote("causal_trace_average.parquet")
        st.finish(model=lm.describe(), summary=stored)
    return summary


def _timed(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary as written: wall-clock time in one field, ``timing``, so the rest is the same on every run."""
    return {**{k: v for k, v in summary.items() if k != "seconds"}, "timing": {"seconds": summary["seconds"]}}


def _subject_std(lm: LoadedModel, source: str) -> float:
    """Std of the subject embeddings of a fact set, cached per model and set (the built-in set takes half a
    minute to build from countryinfo; a file is keyed by its content)."""
    import hashlib

    from neuronmap.edit.experiments.causal_trace import subject_noise_std
    from neuronmap.models.registry import cache_root

    path = Path(source)
    content = path.read_bytes() if path.is_file() else source.encode()
    key = hashlib.sha256(lm.weights_hash.encode() + b"\0" + content).hexdigest()[:24]
    cached = cache_root() / "edit" / "noise" / f"{key}.json"
    if cached.is_file():
        return float(json.loads(cached.read_text())["std"])
    subjects = [f.subject for f in load_facts(source)[0]]
    std = subject_noise_std(lm, subjects, 1.0)
    atomic_write_json({"std": std, "source": source, "subjects": len(subjects)}, cached)
    return std


def _facts_table(traces: list[Any]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "fact_id": [t.fact.fact_id for t in traces],
            "prompt": [t.fact.prompt for t in traces],
            "subject": [t.fact.subject for t in traces],
            "target": [t.target for t in traces],
            "relation": [t.fact.relation for t in traces],
            "subject_start": [t.span[0] for t in traces],
            "subject_end": [t.span[1] for t in traces],
            "tokens": [t.tokens for t in traces],
            "p_clean": [t.p_clean for t in traces],
            "p_corrupted": [t.p_corrupted for t in traces],
            "known": [t.known for t in traces],
        }
    )


def _peaks(traces: list[Any], average: pd.DataFrame | None) -> dict[str, dict[str, Any]]:
    """Per kind, the cell with the largest (average) indirect effect: where the fact is recalled."""
    peaks = {}
    if average is not None:
        for kind, sel in average.groupby("kind"):
            row = sel.loc[sel["indirect"].idxmax()]
            peaks[str(kind)] = {
                "layer": int(row["layer"]),
                "position_class": row["position_class"],
                "indirect": float(row["indirect"]),
            }
        return peaks
    tr = traces[0]
    for kind, sel in tr.table.groupby("kind"):
        row = sel.loc[sel["indirect"].idxmax()]
        peaks[str(kind)] = {
            "layer": int(row["layer"]),
            "position": int(row["position"]),
            "token": row["token"],
            "effect": float(row["effect"]),
            "indirect": float(row["indirect"]),
        }
    return peaks


def run_eval(
    out: str | Path,
    lm: LoadedModel,
    *,
    facts: str = "builtin:counterfact-lite",
    limit: int | None = None,
    offset: int = 0,
    hparams: str | None = None,
    layers: Sequence[int] | None = None,
    with_fluency: bool = True,
    gen_length: int = 100,
    seed: int = 0,
    max_memory: str | int | None = None,
    progress: bool = True,
    algorithm: str = "rome",
    batch: int = 1,
) -> dict[str, Any]:
    """Evaluate ROME (or MEMIT, ``algorithm="memit"``) on CounterFact records into ``out`` (results.parquet,
    summary.json), ``batch`` records edited together (see ``experiments.evaluate``)."""
    from neuronmap.edit.experiments.evaluate import evaluate
    from neuronmap.edit.hparams import load_edit_hparams

    if gen_length < 1:
        raise NeuronmapError("--gen-length must be at least 1")
    records = load_records(facts, limit=limit, offset=offset)
    hp = load_edit_hparams(algorithm, hparams, model=lm.spec)
    if layers:
        lm.adapter.resolve_layers(list(layers))  # a clear error before any work
    out = Path(out)
    params = {
        "facts": facts,
        "limit": limit,
        "offset": offset,
        "hparams": hparams,
        "layers": layers,
        "seed": seed,
    }
    if algorithm != "rome" or batch != 1:  # a ROME run's record stays as it was before MEMIT
        params |= {"algorithm": algorithm, "batch": batch}
    # what else decides the rows: a stopped run resumes only when all of it is as it was
    setting = {"hparams": hp.to_dict(), "fluency_length": gen_length if with_fluency else None,
               "model": lm.describe()}  # fmt: skip
    parts = out / "parts"
    with stage(RunDir(out), "edit_eval", params, resumable=True) as st:
        result = evaluate(
            lm,
            records,
            hp,
            batch=batch,
            layers=layers,
            with_fluency=with_fluency,
            gen_length=gen_length,
            seed=seed,
            progress=progress,
            source=facts,
            max_memory=max_memory,
            parts=parts,
            on_start=lambda: start_with_parts(st, parts, setting),
        )
        atomic_write_parquet(result.results, out / "results.parquet")
        summary = {**result.summary, "facts": facts, "limit": limit, "offset": offset}
        atomic_write_json(_timed(summary), out / "summary.json")
        st.wrote("results.parquet", "summary.json")
        st.finish(
            model=lm.describe(),
            summary={k: summary[k] for k in ("efficacy", "paraphrase", "neighborhood", "score", "fluency")},
        )
        shutil.rmtree(parts, ignore_errors=True)
    return summary


SAVE_AS = ("delta", "model")


def run_edit(
    lm: LoadedModel,
    *,
    subject: str,
    prompt: str,
    target_new: str,
    target_true: str | None = None,
    layer: int | None = None,
    hparams: str | None = None,
    apply: Sequence[str | Path] = (),
    check: Sequence[str] = (),
    save: str | Path | None = None,
    save_as: str = "delta",
    progress: bool = True,
    algorithm: str = "rome",
    layers: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Rewrite one fact with ROME, as ``neuronmap edit`` does: the saved edits of ``apply`` first (in order, ROME's
    or MEMIT's), then the rank-one edit of ``prompt`` (with ``{}`` for ``subject``) towards ``target_new``; with
    ``algorithm="memit"``, MEMIT's edit of the range ``layers`` (default the hparams'). The model stays edited.

    Returns ``edit`` (the :class:`~neuronmap.edit.algorithm.edit.Edit`, or a ``MemitEdit``; ``edit.undo()`` takes
    it back), ``layer`` (MEMIT: the last of its ``layers``), ``module`` (and ``modules``), ``steps``,
    ``delta_norm``, ``cached`` (MEMIT's target read from its ``z_cache``, not searched now), ``seconds``, the
    ``prompts`` scored (the rewrite prompt and each of ``check``), the ``targets`` (``target_new``, and ``target_true`` when given), ``before`` and ``after``: the
    probability of each target (rows) on each prompt (columns), and ``saved``: where ``save`` wrote the edit
    (``save_as`` "delta": a .safetensors file) or the edited model ("model": a Hugging Face folder), or None.
    """
    from neuronmap.edit.algorithm.edit import Edit, load_edit, rome, save_model
    from neuronmap.edit.algorithm.memit import memit, z_cache
    from neuronmap.edit.algorithm.memit_edit import MemitEdit
    from neuronmap.edit.algorithm.request import Request
    from neuronmap.edit.hparams import MemitHparams, edit_layers, load_edit_hparams
    from neuronmap.edit.prompts import opening_ids
    from neuronmap.edit.scoring import mean_logprobs
    from neuronmap.edit.window import check_prompts, check_request

    chosen = edit_layers(algorithm, list(layers) if layers else ([layer] if layer is not None else None))
    if save_as not in SAVE_AS:
        raise NeuronmapError(f"--save-as takes delta or model, got {save_as!r}")
    request = Request(prompt, subject, target_new, target_true).validate()
    hp = load_edit_hparams(algorithm, hparams, model=lm.spec)
    check = list(check)
    check_request(lm, hp, request, "--prompt")
    check_prompts(lm, hp, check, [target_new, target_true or ""], "--check", "the prompt with its target")
    opening = opening_ids(lm.tokenizer, hp.document_start)
    prior = [load_edit(path, lm) for path in apply]
    for e in prior:
        e.apply()
    prompts = [request.text, *check]
    targets = [t for t in (target_new, target_true) if t]

    def probs() -> list[list[float]]:
        return [
            mean_logprobs(lm, prompts, [t] * len(prompts), opening=opening).exp().tolist() for t in targets
        ]

    before = probs()
    edit: Edit | MemitEdit
    if isinstance(hp, MemitHparams):
        edit = memit(lm, [request], hp, layers=chosen, progress=progress, keep=z_cache(lm)).apply()
        steps, delta_norm = edit.info["steps"][0], edit.info["delta_norm"][0]
        cached = edit.info["z_cached"][0]
    else:
        edit = rome(lm, request, hp, layer=chosen[0] if chosen else None, progress=progress).apply()
        steps, delta_norm, cached = edit.info["steps"], edit.info["delta_norm"], False
    after = probs()
    saved = None
    if save is not None:
        saved = edit.save(save) if save_as == "delta" else save_model(lm, save, [*prior, edit])
    return {
        "edit": edit,
        "algorithm": algorithm,
        "layer": edit.layers[-1],
        "layers": edit.layers,
        "module": edit.module_names[-1],
        "modules": edit.module_names,
        "steps": steps,
        "delta_norm": delta_norm,
        "cached": cached,
        "seconds": edit.info["seconds"],
        "prompts": prompts,
        "targets": targets,
        "before": before,
        "after": after,
        "saved": saved,
        "save_as": save_as,
    }
