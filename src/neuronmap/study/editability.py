"""Editability of a fact: how well ROME rewrites it at a layer, and how strong an edit it takes to flip it.

- ``probabilities``: P(new) and P(true) on the rewrite prompt and its paraphrases, and each neighbour's P(its true
  target) against P(new); P is exp of the mean log-probability per target token (``edit.scoring``, as CounterFact).
- ``edit_scores``: efficacy margin (P(new) - P(true) after the edit), efficacy, paraphrase score and margin,
  neighbourhood score (neighbours whose true target still beats the new one), Hase et al.'s rewrite score.
- ``bisect_flip``: the smallest x in [lo, hi] at which a monotone yes/no function turns yes (bisection, in log
  space by default), with a status for the ends.
- ``edit_fact``: a fact edited at each layer of a ``SweepPlan``, its scores per layer and its flip norm at the
  hparams' layer (the study's unit of work, kept in ``edits_part``).
- ``flip_norm``: the smallest norm of the added value vector, in units of the clean value's norm, that makes
  P(new) > P(true) on the rewrite prompt. ``mode="scale"`` keeps the direction ROME optimised at full strength
  and bisects on its length (one forward pass per probe); ``mode="clamp"`` re-optimises the value under each
  probed norm clamp (``clamp_norm_factor``; a full ROME value optimisation per probe).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuronmap.edit.algorithm.edit import Edit, rome
from neuronmap.edit.algorithm.request import Request
from neuronmap.edit.hparams import RomeHparams
from neuronmap.edit.scoring import mean_logprobs
from neuronmap.edit.stats import SecondMoment
from neuronmap.models.loader import LoadedModel
from neuronmap.study.facts import StudyFact

FLIP_LOW = 0.01  # the smallest norm factor probed


@dataclass
class Probs:
    new: np.ndarray  # (1 + paraphrases + neighbours,) P(new) per prompt
    true: np.ndarray  # P(true) per prompt (each neighbour's own true target)
    n_paraphrases: int


def request(fact: StudyFact) -> Request:
    return Request(fact.prompt, fact.subject, fact.target_new, fact.target_true)


def probabilities(
    lm: LoadedModel, fact: StudyFact, opening: Sequence[int] = (), rewrite_only: bool = False
) -> Probs:
    prompts = [fact.text]
    trues = [fact.target_true]
    if not rewrite_only:
        prompts += list(fact.paraphrases) + [p for p, _ in fact.neighbours]
        trues += [fact.target_true] * len(fact.paraphrases) + [t for _, t in fact.neighbours]
    lp = (
        mean_logprobs(lm, prompts * 2, [fact.target_new] * len(prompts) + trues, opening=opening)
        .exp()
        .numpy()
    )
    n = len(prompts)
    return Probs(lp[:n].astype(float), lp[n:].astype(float), 0 if rewrite_only else len(fact.paraphrases))


def edit_scores(pre: Probs, post: Probs) -> dict[str, float]:
    """Scores of an edit from the probabilities before and after it (NaN where a fact has no such prompts)."""
    k = post.n_paraphrases
    margin = post.new - post.true
    para, neigh = margin[1 : 1 + k], -margin[1 + k :]

    def mean(a: np.ndarray) -> float:
        return float(a.mean()) if a.size else float("nan")

    rewrite = (post.new[0] - pre.new[0]) / (1 - pre.new[0]) if pre.new[0] < 1 else float("nan")
    return {
        "efficacy_margin": float(margin[0]),
        "efficacy": float(margin[0] > 0),
        "paraphrase": mean((para > 0).astype(float)),
        "paraphrase_margin": mean(para),
        "neighborhood": mean((neigh > 0).astype(float)),
        "neighborhood_margin": mean(neigh),
        "rewrite_score": float(rewrite),
        # the best-layer criterion: the mean margin over the rewrite prompt and its paraphrases
        "generalization_margin": float(margin[: 1 + k].mean()),
    }


def bisect_flip(
    flips: Callable[[float], bool], lo: float, hi: float, iters: int = 8, log: bool = True
) -> tuple[float, str]:
    """Smallest x in [lo, hi] with ``flips(x)`` for a monotone ``flips`` (False below a point, True above):
    ``(x, "flipped")`` within the bisection's resolution (the upper end of the last bracket), ``(lo, "at_low")``
    when it flips already at ``lo``, ``(hi, "not_flipped")`` when not even at ``hi`` (a censored value)."""
    ok = 0 < lo < hi if log else lo < hi
    if not ok:
        raise ValueError("need lo < hi (and lo > 0 in log space)")
    if not flips(hi):
        return hi, "not_flipped"
    if flips(lo):
        return lo, "at_low"
    for _ in range(iters):
        mid = math.sqrt(lo * hi) if log else (lo + hi) / 2
        if flips(mid):
            hi = mid
        else:
            lo = mid
    return hi, "flipped"


@dataclass
class EditSetup:
    """What every fact's edits share: the hparams, the context prefixes, the statistics of each layer."""

    hparams: RomeHparams
    prefixes: list[str]
    stats: dict[int, SecondMoment]
    opening: list[int]

    def edit(self, lm: LoadedModel, fact: StudyFact, layer: int, **changes: float) -> Edit:
        hp = self.hparams.replace(**changes) if changes else self.hparams
        return rome(lm, request(fact), hp, layer=layer, stats=self.stats.get(layer), prefixes=self.prefixes)


def _flipped(lm: LoadedModel, fact: StudyFact, edit: Edit, opening: Sequence[int]) -> bool:
    with edit:
        p = probabilities(lm, fact, opening, rewrite_only=True)
    return bool(p.new[0] > p.true[0])


def flip_norm(
    lm: LoadedModel,
    fact: StudyFact,
    setup: EditSetup,
    layer: int,
    full: Edit,
    mode: str = "scale",
    iters: int = 8,
) -> tuple[float, str]:
    """The flip point of ``fact`` at ``layer`` in units of |v_init| (see the module docstring); ``full`` is the
    ROME edit at the hparams' clamp, whose direction ``scale`` keeps."""
    hi = setup.hparams.clamp_norm_factor
    if mode == "clamp":
        return bisect_flip(
            lambda c: _flipped(lm, fact, setup.edit(lm, fact, layer, clamp_norm_factor=c), setup.opening),
            FLIP_LOW,
            hi,
            iters,
        )
    v_init, direction = full.info["v_init_norm"], full.right / max(float(full.right.norm()), 1e-30)

    def scaled(c: float) -> bool:
        edit = Edit(lm, full.layer, full.left, direction * (c * v_init), full.request, full.hparams)
        return _flipped(lm, fact, edit, setup.opening)

    return bisect_flip(scaled, FLIP_LOW, hi, iters)


def relative_delta(edit: Edit) -> float:
    """|delta| / |v_init| of an edit (how far ROME moved the value)."""
    return float(edit.info["delta_norm"]) / max(float(edit.info["v_init_norm"]), 1e-30)


def edits_part(parts: Path, fact: StudyFact) -> Path:
    """Where a study keeps ``fact``'s edits (``rundir.kept``)."""
    return parts / f"edits-{fact.fact_id:05d}.parquet"


@dataclass(frozen=True)
class SweepPlan:
    """What each fact of a study is edited with: the shared setup, the sweep layers, the layer whose flip norm is
    measured, and the flip search (mode, iterations)."""

    setup: EditSetup
    sweep: tuple[int, ...]
    edit_layer: int
    flip: tuple[str, int]


def edit_fact(
    lm: LoadedModel, fact: StudyFact, plan: SweepPlan, advance: Callable[[], Any] | None = None
) -> tuple[pd.DataFrame, tuple[float, str]]:
    """``fact`` edited at each sweep layer (a row of scores each) and its flip norm at the plan's ``edit_layer``;
    ``advance`` after each layer. The model is left as it was."""
    setup, rows = plan.setup, []
    pre = probabilities(lm, fact, setup.opening)
    for layer in plan.sweep:
        edit = setup.edit(lm, fact, layer)
        with edit:
            post = probabilities(lm, fact, setup.opening)
        row = {"fact_id": fact.fact_id, "layer": layer, **edit_scores(pre, post)}
        row["delta_rel"] = relative_delta(edit)
        row["steps"] = edit.info["steps"]
        if layer == plan.edit_layer:
            flipped = flip_norm(lm, fact, setup, layer, edit, *plan.flip)
        rows.append(row)
        if advance is not None:
            advance()
    return pd.DataFrame(rows), flipped
