"""The editability study at full settings, as the README reports it: ``python -m bench.study_editability``.

Runs ``neuronmap study editability`` on SmolLM2-135M with the shipped ROME hparams at their own settings (20
optimisation steps at most, the hparams' generated context prefixes), the first ``--limit`` facts of
``builtin:facts`` with ``--keep rank`` (so that facts the model holds without a top-1 guess, the seed's California
among them, are studied: about 100 of the first 110), and the study's defaults otherwise. The study keeps each
fact as it is done, so the same command resumes after a stop; a folder whose ``summary.json`` is written is read,
not rerun.

The run's deterministic outputs (``summary.json``, whose only varying part is ``timing``, the run's parameters as
``params.json``, the correlation, fact, unknown-fact, edit and causal-profile tables, ``report.md`` and the PNG
figures) are copied to ``bench/results/study-MODEL/``, which the README quotes: ``section(...)`` of that folder
writes the README's measured results (the facts, the correlation table, the edits at the default layer, the best-layer test, the
generated conclusion), printed at the end.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.timing import run_timed

HERE = Path(__file__).parent
KEPT = (
    "summary.json", "correlations.parquet", "facts.parquet", "facts_unknown.parquet", "sweep.parquet",
    "profiles.parquet", "report.md",
)  # fmt: skip
# the README's words for the study's measure names
LABELS = {
    "mlp_peak_layer": "MLP peak layer",
    "mlp_peak_effect": "MLP peak effect",
    "mlp_entropy": "MLP entropy (layer spread)",
    "mlp_layers_above_half": "MLP layers above half the peak",
    "attn_peak_effect": "attention peak effect",
    "hidden_peak_effect": "hidden-state peak effect",
    "neurons_50": "neurons carrying 50% of the attribution",
    "neurons_80": "neurons carrying 80% of the attribution",
    "gini": "Gini of the attribution",
    "p_clean": "clean P(true) (control)",
    "flip_norm": "flip norm",
    "efficacy_margin": "efficacy margin",
    "paraphrase": "paraphrase",
    "neighborhood": "neighbourhood",
}


def table(corr: Any, rows: int = 10) -> str:
    """The ``rows`` shape x editability pairs with the smallest adjusted p-values (ties: the larger |rho|), as
    Markdown; significant ones (adjusted p < 0.05 and an interval excluding zero) in bold."""
    tested = corr.dropna(subset=["rho"]).assign(strength=lambda d: -d["rho"].abs())
    top = tested.sort_values(["p_adjusted", "strength", "shape", "editability"]).head(rows)
    lines = [
        "| shape measure | editability | n | Spearman rho | 95% CI | adjusted p |",
        "|---|---|---:|---:|---|---:|",
    ]
    for r in top.itertuples():
        bold = "**" if r.significant else ""
        lines.append(
            f"| {LABELS[r.shape]} | {LABELS[r.editability]} | {r.n} | {bold}{r.rho:+.2f}{bold} | "
            f"{r.ci_low:+.2f} to {r.ci_high:+.2f} | {bold}{r.p_adjusted:.2g}{bold} |"
        )
    return "\n".join(lines)


def _percent(x: float) -> str:
    return f"{100 * x:.0f}%"


def section(result: Path) -> str:
    """The README's measured results of the study in ``result`` (a ``bench/results/study-MODEL`` folder)."""
    import pandas as pd

    summary = json.loads((result / "summary.json").read_text())
    params = json.loads((result / "params.json").read_text())
    facts = pd.read_parquet(result / "facts.parquet")
    unknown = pd.read_parquet(result / "facts_unknown.parquet")
    corr = pd.read_parquet(result / "correlations.parquet")
    ranked = unknown[unknown["studied"]]
    seeds = ranked[ranked["seed"] != ""]
    clamp = params["flip_range"][1]
    censored = int((facts["flip_status"] == "not_flipped").sum())
    paraphrased = facts["paraphrase"].notna()
    best, peak = facts["best_layer"].value_counts(), facts["mlp_peak_layer"].astype(int).value_counts()
    tested = corr.dropna(subset=["rho"])
    lines = [
        f"{summary['facts']} facts: the model's top prediction is the true target for "
        f"{summary['facts'] - summary['unknown']}; `--keep {params['keep']}` adds {len(ranked)}"
        + (" it holds without a top-1 guess" if params["keep"] == "rank" else "")
        + (
            f" (among them the seed fact{'s' if len(seeds) > 1 else ''} "
            + "; ".join(f'"{p} {t}"' for p, t in zip(seeds["prompt"], seeds["target_true"], strict=True))
            + ")"
            if len(seeds)
            else ""
        )
        + f"; {summary['studied']} studied, {summary['unknown'] - len(ranked)} listed as unknown. ROME at layer "
        f"{params['edit_layer']}, clamp {clamp}, at most {params['steps']} steps, prefixes {params['prefixes']}; "
        f"the sweep on layers {', '.join(map(str, params['sweep_layers']))}; tracing on every third layer with "
        f"{params['samples']} noise draws; flip bisection in {params['flip_iters']} steps on "
        f"[{params['flip_range'][0]}, {clamp}].",
        "",
        table(corr),
        "",
        f"({len(tested)} pairs in all in `correlations.parquet` and the report; paraphrase scores exist for the "
        f"{int(paraphrased.sum())} facts whose relation has paraphrases.) Edits at the default layer: efficacy "
        f"{_percent(facts['efficacy'].mean())}, paraphrase {_percent(facts.loc[paraphrased, 'paraphrase'].mean())}, "
        f"neighbourhood {_percent(facts['neighborhood'].mean())}; {censored} of the {len(facts)} facts do not flip "
        f"even at |delta| = {clamp} |v_init| along ROME's direction (flip norm censored at {clamp}), the median "
        f"flip norm is {facts['flip_norm'].median():.2f}. The best sweep layer is mostly layer {best.index[0]} "
        f"({best.iloc[0]} facts), the MLP causal peak mostly layer {peak.index[0]} ({peak.iloc[0]}); the fact lives "
        f"at the last subject token for {int(facts['live_is_last'].sum())} of the {len(facts)}.",
        "",
        "**Conclusion** (generated by `study/conclusion.py`, as in `report.md`):",
        "",
        *(f"- {line}" for line in summary["conclusion"]),
    ]
    return "\n".join(lines)


def collect(out: Path, result: Path) -> None:
    """Copy the finished study in ``out`` to ``result``: its deterministic files, the PNG figures and the run's
    parameters (``params.json``, from ``run.json``, whose times vary)."""
    if result.exists():
        shutil.rmtree(result)
    (result / "figures").mkdir(parents=True)
    for name in KEPT:
        shutil.copy2(out / name, result / name)
    params = json.loads((out / "run.json").read_text())["stages"]["study"]["params"]
    (result / "params.json").write_text(json.dumps(params, indent=2) + "\n")
    for png in sorted((out / "figures").glob("*.png")):
        shutil.copy2(png, result / "figures" / png.name)


def command(args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "neuronmap", "study", "editability", "--model", args.model, "--facts", args.facts,
        "--limit", str(args.limit), "--keep", "rank", "--steps", "20", "--prefixes", "hparams",
        "--threads", str(args.threads), "--workers", str(args.workers), "--out", str(args.out),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--facts", default="builtin:facts")
    parser.add_argument("--limit", type=int, default=110, help="the first N facts (those kept are studied)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the run")
    parser.add_argument("--workers", type=int, default=1, help="processes editing facts (sharing --threads)")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the run (share the machine)")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/study-smollm2-full"), help="the study's folder"
    )
    parser.add_argument("--result", type=Path, default=None, help="default: bench/results/study-MODEL")
    args = parser.parse_args()
    result = args.result or HERE / "results" / f"study-{args.model}"
    if not (args.out / "summary.json").is_file():
        run_timed(command(args), nice=args.nice)
    collect(args.out, result)
    print(section(result))


if __name__ == "__main__":
    main()
