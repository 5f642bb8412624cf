"""The study's conclusion, written from the numbers: which measures predict editability and which do not.

Rules, so that no sentence claims more than the statistics: a measure "predicts" an editability measure only when
the Benjamini-Hochberg adjusted p-value is below 0.05 *and* the bootstrap 95% interval excludes zero; otherwise
the correlation is "not supported", and the interval says how large an effect the data still allow. The peak
layer "predicts" the best layer only when both its rank correlation and its match rate beat chance. A measure that
predicts is then split between and within relations: an association carried by the kind of fact (facts of one
relation alike in both measures) is not one between facts. The seed facts are described, never generalised from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from neuronmap.study.stats import ALPHA, by_group

# Which direction of each editability measure means "easier to edit".
EASIER = {
    "flip_norm": -1,
    "efficacy_margin": 1,
    "paraphrase": 1,
    "neighborhood": 1,
}


def _fmt(row: pd.Series) -> str:
    return f"rho = {row['rho']:+.2f} (95% CI {row['ci_low']:+.2f} to {row['ci_high']:+.2f}, adjusted p = {row['p_adjusted']:.3g}, n = {row['n']})"


def conclude(table: pd.DataFrame, corr: pd.DataFrame, summary: dict[str, Any]) -> list[str]:
    """Sentences (markdown) of the conclusion."""
    lines = []
    tested = corr.dropna(subset=["rho"])
    sig = tested[tested["significant"]]
    n_tests = len(tested)
    shape_sig = sig[sig["shape"] != "p_clean"]
    if shape_sig.empty:
        lines.append(
            f"**No shape measure predicts editability** in this run: none of the {int((tested['shape'] != 'p_clean').sum())} "
            f"shape x editability correlations is significant after correcting for {n_tests} tests "
            f"(Benjamini-Hochberg, alpha = {ALPHA}) with a bootstrap interval excluding zero."
        )
    else:
        for _, row in shape_sig.iterrows():
            sign = EASIER.get(row["editability"], 1) * np.sign(row["rho"])
            reading = "easier" if sign > 0 else "harder"
            lines.append(
                f"**{row['shape']} predicts {row['editability']}**: {_fmt(row)}; facts with a higher "
                f"{row['shape']} are {reading} to edit by this measure."
            )
    flat = tested[(tested["shape"] != "p_clean") & ~tested["significant"]]
    if not flat.empty:
        bound = float(np.nanmax(np.abs(flat[["ci_low", "ci_high"]].to_numpy())))
        strongest = flat.loc[flat["rho"].abs().idxmax()]
        lines.append(
            f"Not supported: {len(flat)} shape x editability pairs; the strongest of them is {strongest['shape']} vs "
            f"{strongest['editability']} ({_fmt(strongest)}). "
            + (
                f"Their intervals reach at most |rho| = {bound:.2f}, so correlations stronger than that are unlikely "
                "for these facts and this model; weaker ones cannot be ruled out."
                if bound < 0.95
                else "Their intervals are too wide to rule out even strong correlations: more facts are needed."
            )
        )
    control = tested[tested["shape"] == "p_clean"]
    for _, row in control[control["significant"]].iterrows():
        lines.append(
            f"The model's confidence in the true target (p_clean, a control, not a shape) relates to "
            f"{row['editability']}: {_fmt(row)}."
        )
    lines += relations(table, shape_sig)
    lines += _layers(summary)
    lines += _classes(summary)
    lines += _seeds(table)
    return lines


def relations(table: pd.DataFrame, supported: pd.DataFrame) -> list[str]:
    """For each supported (shape, editability) pair: its association between relations (their medians) and
    within them (``stats.by_group``), and what that says. Nothing when the facts have fewer than 3 relations."""
    if "relation" not in table or table["relation"].nunique() < 3:
        return []
    lines = []
    for _, row in supported.iterrows():
        g = by_group(table[row["shape"]], table[row["editability"]], table["relation"])
        if not np.isfinite(g["within_rho"]):
            continue
        if g["within_p"] >= ALPHA:
            reading = ("the association is carried by the kind of fact (the relation and its prompt); among the "
                       "facts of one relation it is not shown")  # fmt: skip
        elif np.sign(g["within_rho"]) == np.sign(row["rho"]):
            reading = "the association holds among the facts of one relation too, so it is not only the kind of fact"
        else:
            reading = (
                "among the facts of one relation the association reverses: the overall one is the relations'"
            )
        lines.append(
            f"{row['shape']} vs {row['editability']} between and within relations: the {g['groups']} relations' "
            f"medians give rho = {g['between_rho']:+.2f} (p = {g['between_p']:.3g}); within relations (percentile "
            f"ranks among a relation's facts, the {g['within_n']} facts of the {g['within_groups']} relations with "
            f"at least 3) rho = {g['within_rho']:+.2f} (permutation p = {g['within_p']:.3g}): {reading}."
        )
    return lines


def _layers(summary: dict[str, Any]) -> list[str]:
    a = summary["agreement"]["mlp"]
    if not np.isfinite(a.get("rho", np.nan)):
        return [
            "The best-layer vs peak-layer test has too few facts with a varying peak or best layer to say anything."
        ]
    supported = (
        a["p"] < ALPHA and a["ci_low"] > 0 and np.isfinite(a.get("p_match", np.nan)) and a["p_match"] < ALPHA
    )
    text = (
        f"Best edit layer vs MLP causal peak layer: rho = {a['rho']:+.2f} (95% CI {a['ci_low']:+.2f} to "
        f"{a['ci_high']:+.2f}, p = {a['p']:.3g}); the best layer is the swept layer nearest the peak for "
        f"{a['match_rate']:.0%} of facts against {a['chance_rate']:.0%} expected by chance (one-sided binomial "
        f"p = {a.get('p_match', float('nan')):.3g}); mean |best - peak| = {a['mean_abs_gap']:.1f} layers. "
    )
    if supported:
        return [text + "Here localisation does predict where to edit, **unlike Hase et al. (2023)**."]
    return [
        text + "Localisation does **not** predict the best layer to edit here, "
        "**consistent with Hase et al. (2023)**."
    ]


def _classes(summary: dict[str, Any]) -> list[str]:
    c = summary["classes"]
    groups = ", ".join(f"{k}: n = {v['n']}, median {v['median']:.2f}" for k, v in c["groups"].items())
    if not np.isfinite(c["p"]):
        return [f"Flip norm by shape class ({groups}): too few classes to test."]
    verdict = "differ" if c["p"] < ALPHA else "do not differ significantly"
    return [
        f"Flip norm by shape class ({summary['axes']}): {groups}; the classes {verdict} "
        f"(Kruskal-Wallis p = {c['p']:.3g})."
    ]


def _seeds(table: pd.DataFrame) -> list[str]:
    seeds = table[table["seed"] != ""]
    if seeds.empty:
        return [
            "None of the seed facts (Eiffel Tower, White House, California) was studied (unknown or not in the set)."
        ]
    rank = table["flip_norm"].rank(pct=True)
    parts = []
    for i, row in seeds.iterrows():
        status = "" if row["flip_status"] == "flipped" else f" ({row['flip_status']})"
        parts.append(
            f"{row['prompt']} -> {row['target_true']}: flip norm {row['flip_norm']:.2f}{status} "
            f"(percentile {rank[i]:.0%}), {row['shape_class']}"
        )
    return ["Seed facts (anecdotes, not evidence): " + "; ".join(parts) + "."]
