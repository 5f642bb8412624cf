"""CounterFact-style evaluation of ROME (the ROME paper's section 4.2), per fact and averaged.

For each record: the unedited model is scored, the edit is computed and applied, the edited model is scored,
and the edit is undone (each edit is evaluated alone, on the original weights). Metrics, each for the edited and
the unedited model:

- efficacy: P(new) > P(true) on the rewrite prompt; paraphrase: the same, averaged over paraphrase prompts;
  neighbourhood: P(true) > P(new) on prompts about other subjects with the same true object;
- their magnitudes (mean P(new) - P(true), and P(true) - P(new) for neighbourhood);
- score: the harmonic mean of efficacy, paraphrase and neighbourhood;
- fluency: ROME's weighted 2-/3-gram entropy of sampled generations from the generation prompts.

P is exp(mean log-probability per target token), as in ROME's code. With ``document_start`` in the hparams,
every prompt (scored or sampled) opens a document, as the edit itself saw it. Several ``layers`` make a layer sweep: each
record is edited at each layer, sharing the unedited scores, the prefixes and one pass of statistics.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from neuronmap.edit.algorithm.context import context_prefixes
from neuronmap.edit.algorithm.edit import rome
from neuronmap.edit.dsets.counterfact import Record
from neuronmap.edit.experiments.fluency import generate, ngram_entropy, record_seed
from neuronmap.edit.hparams import RomeHparams, load_hparams
from neuronmap.edit.prompts import opening_ids
from neuronmap.edit.scoring import mean_logprobs
from neuronmap.edit.stats import second_moments
from neuronmap.edit.window import check_fits, check_prompts, check_request, token_count
from neuronmap.errors import NeuronmapError
from neuronmap.models.loader import LoadedModel
from neuronmap.models.memory import Budget, format_bytes, memory_budget
from neuronmap.progress import progress_bar

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


def check_record(lm: LoadedModel, hp: RomeHparams, record: Record, gen_length: int, where: str) -> RecordSize:
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
    hp: RomeHparams,
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
    hparams: RomeHparams | str | None = None,
    *,
    layers: Sequence[int] | None = None,
    with_fluency: bool = True,
    gen_length: int = 100,
    seed: int = 0,
    batch_size: int = 32,
    progress: bool = True,
    source: str = "records",
    max_memory: str | int | None = None,
) -> Evaluation:
    """Edit each record alone (at each of ``layers``; default the hparams' layer) and score it before and after.
    Every record is checked against the model's window and ``max_memory`` first (``source`` names the records in
    those messages); the scoring batches shrink below ``batch_size`` where they would not fit."""
    start_time = time.perf_counter()
    hp = hparams if isinstance(hparams, RomeHparams) else load_hparams(hparams, model=lm.spec)
    chosen = list(layers) if layers else [hp.resolve_layer(lm.n_layers)]
    chosen = [lm.adapter.check_layer(layer + lm.n_layers if layer < 0 else layer) for layer in chosen]
    sizes = []
    for record in records:
        where = f"{source}: case {record.case_id}"
        sizes.append((where, check_record(lm, hp, record, gen_length if with_fluency else 0, where)))
    batch_size = plan_memory(lm, hp, sizes, chosen, batch_size, memory_budget(max_memory, lm.device))
    prefixes = context_prefixes(lm, hp)
    opening = opening_ids(lm.tokenizer, hp.document_start)
    stats: dict[int, Any] = {}
    if hp.mom2_adjustment:
        stats = second_moments(
            lm,
            sorted(set(chosen)),
            corpus=hp.mom2_corpus,
            n_tokens=hp.mom2_n_tokens,
            max_length=hp.mom2_max_length,
            progress=progress,
        )
    rows = []
    with progress_bar("edit-eval", total=len(records) * len(chosen), unit="edit", enabled=progress) as bar:
        for record in records:
            gen_seed = record_seed(seed, record.case_id)
            pre = record_metrics(lm, record, batch_size, opening)
            fl_pre = fluency(lm, record, gen_length, gen_seed, opening) if with_fluency else float("nan")
            for layer in chosen:
                edit = rome(lm, record.request, hp, layer=layer, stats=stats.get(layer), prefixes=prefixes)
                with edit:
                    post = record_metrics(lm, record, batch_size, opening)
                    fl_post = (
                        fluency(lm, record, gen_length, gen_seed, opening) if with_fluency else float("nan")
                    )
                row = {
                    "case_id": str(record.case_id),
                    "layer": layer,
                    "subject": record.request.subject,
                    "relation": record.relation,
                    "prompt": record.request.text,
                    "target_true": record.target_true,
                    "target_new": record.request.target_new,
                    **{f"{k}_pre": v for k, v in pre.items()},
                    **{f"{k}_post": v for k, v in post.items()},
                    "fluency_pre": fl_pre,
                    "fluency_post": fl_post,
                    "steps": edit.info["steps"],
                    "delta_norm": edit.info["delta_norm"],
                    "p_new_optimised": edit.info["losses"][-1]["p_new"],
                }
                row["score_pre"] = _hmean([pre[m] for m in METRICS])
                row["score_post"] = _hmean([post[m] for m in METRICS])
                rows.append(row)
                bar.advance()
    results = pd.DataFrame(rows)
    by_layer = {str(layer): summarise(results[results["layer"] == layer]) for layer in chosen}
    first = by_layer[str(chosen[0])]
    summary: dict[str, Any] = {
        **{name: first[name] for name in SUMMARY},
        "records": len(records),
        "layers": chosen,
        "by_layer": by_layer,
        "model": lm.describe(),
        "hparams": hp.to_dict(),
        "fluency_length": gen_length if with_fluency else None,
        "stats_tokens": {str(k): v.n_tokens for k, v in stats.items()},
        "seconds": round(time.perf_counter() - start_time, 1),
    }
    return Evaluation(results, summary)
