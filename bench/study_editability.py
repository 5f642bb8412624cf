"""The editability study at full settings, as the README reports it: ``python -m bench.study_editability``.

Runs ``neuronmap study editability`` on SmolLM2-135M with the shipped ROME hparams at their own settings (20
optimisation steps at most, the hparams' generated context prefixes), the first ``--limit`` facts of
``builtin:facts`` with ``--keep rank`` (so that facts the model holds without a top-1 guess, the seed's California
among them, are studied: about 100 of the first 110), and the study's defaults otherwise. The study keeps each
fact as it is done, so the same command resumes after a stop; a folder whose ``summary.json`` is written is read,
not rerun.

The run's deterministic outputs (``summary.json``, whose only varying part is ``timing``, the correlation, fact
and unknown-fact tables, ``report.md`` and the PNG figures) are copied to ``bench/results/study-MODEL/``, which the
README quotes; the README's correlation table is ``table(...)`` of that folder's ``correlations.parquet``.
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
KEPT = ("summary.json", "correlations.parquet", "facts.parquet", "facts_unknown.parquet", "report.md")
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


def command(args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-m", "neuronmap", "study", "editability", "--model", args.model, "--facts", args.facts,
        "--limit", str(args.limit), "--keep", "rank", "--steps", "20", "--prefixes", "hparams",
        "--threads", str(args.threads), "--out", str(args.out),
    ]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--facts", default="builtin:facts")
    parser.add_argument("--limit", type=int, default=110, help="the first N facts (those kept are studied)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the run")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the run (share the machine)")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/study-smollm2-full"), help="the study's folder"
    )
    parser.add_argument("--result", type=Path, default=None, help="default: bench/results/study-MODEL")
    args = parser.parse_args()
    result = args.result or HERE / "results" / f"study-{args.model}"
    if not (args.out / "summary.json").is_file():
        run_timed(command(args), nice=args.nice)
    if result.exists():
        shutil.rmtree(result)
    (result / "figures").mkdir(parents=True)
    for name in KEPT:
        shutil.copy2(args.out / name, result / name)
    for png in sorted((args.out / "figures").glob("*.png")):
        shutil.copy2(png, result / "figures" / png.name)
    import pandas as pd

    print("\n".join(json.loads((result / "summary.json").read_text())["conclusion"]))
    print(table(pd.read_parquet(result / "correlations.parquet")))


if __name__ == "__main__":
    main()
