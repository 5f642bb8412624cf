"""Does the model predict the targets it is traced on? A trace explains the probability of each target; a
target the model does not predict explains a prediction the model does not make, and a researcher should know
before reading the map.

*Top-1* is the test ``--keep known`` applies and the ``known`` column of ``contexts.parquet`` records: every
token of the target is the model's top prediction under teacher forcing (``trace.batch.picked_top1``). ``p`` is
the whole target's probability (``p_target``: the product of its tokens'). Each-token runs apply it to their
events (one target token each). The summary records, over the traced contexts (or events):

``n``, ``not_top1`` (how many targets are not top-1), ``share_not_top1``, ``median_p`` (all targets),
``median_p_not_top1`` (None when every target is top-1) and ``warn``: the share not top-1 is at least
``WARN_SHARE``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

WARN_SHARE = 0.25  # warn when at least this share of the traced targets is not the model's top-1 prediction
KEEP_HINT = "--keep known traces only the top-1 ones"
RULE = "every target token is the model's top-1 prediction (the test of --keep known)"


def _sig(value: float) -> float:
    return float(f"{value:.4g}")


def target_summary(known: Any, p_target: Any) -> dict[str, Any]:
    """The record of how well the model predicts the targets (``known``: top-1 flags; ``p_target``: their p)."""
    known = np.asarray(known, dtype=bool)
    p = np.asarray(p_target, dtype=np.float64)
    n, miss = len(known), ~known
    missed = int(miss.sum())
    share = missed / n if n else 0.0
    return {
        "n": n,
        "not_top1": missed,
        "share_not_top1": round(share, 4),
        "median_p": _sig(np.median(p)) if n else None,
        "median_p_not_top1": _sig(np.median(p[miss])) if missed else None,
        "warn": bool(n and share >= WARN_SHARE),
    }


def target_line(summary: dict[str, Any], noun: str = "contexts", hint: str | None = KEEP_HINT) -> str:
    """One line on the targets: a warning (ending in ``hint``) when ``summary["warn"]``, else a plain count."""
    n, missed = summary["n"], summary["not_top1"]
    if not n:
        return f"targets: no {noun}"
    if not missed:
        return f"targets: all {n} {noun}' targets are the model's top-1 prediction (median p {summary['median_p']:.3g})"
    text = (
        f"{missed} of {n} {noun} ({summary['share_not_top1']:.0%}) have a target that is not the model's top-1 "
        f"prediction (median p {summary['median_p_not_top1']:.3g} among them; {summary['median_p']:.3g} over all)"
    )
    if summary.get("warn"):
        return f"warning: {text}: their scores explain predictions the model does not make" + (
            f" ({hint})" if hint else ""
        )
    return "targets: " + text
