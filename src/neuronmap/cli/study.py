"""``neuronmap study``: studies across facts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from neuronmap.cli.common import app, formats, int_list, stdout
from neuronmap.cli.options import Device, Dtype, FigureFormat, Hparams, Model, Threads, load_model_checked
from neuronmap.study.config import check_facts_file, check_study_options

study_app = typer.Typer(help="Studies across facts: which facts are easy to edit.", no_args_is_help=True)
app.add_typer(study_app, name="study")


@study_app.command("editability")
def study_editability_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the tables, figures and report.")],
    model: Model = "smollm2-135m",
    facts: Annotated[
        str,
        typer.Option(
            help="builtin:facts (seed facts first), builtin:counterfact-lite or a CounterFact .json."
        ),
    ] = "builtin:facts",
    limit: Annotated[
        int | None, typer.Option(help="The first N facts (those the model knows are studied).")
    ] = None,
    layers: Annotated[
        str | None,
        typer.Option(
            help="Layers of the best-layer sweep (default: every third of the first 60%, and ROME's)."
        ),
    ] = None,
    trace_every: Annotated[int, typer.Option(help="Causal tracing on every N-th layer (and the last).")] = 3,
    samples: Annotated[int, typer.Option(help="Noise draws per fact in causal tracing.")] = 5,
    steps: Annotated[int, typer.Option(help="ROME value optimisation steps (at most).")] = 6,
    prefixes: Annotated[
        str,
        typer.Option(help="bare (the rewrite prompt alone) | hparams (ROME's generated context prefixes)."),
    ] = "bare",
    flip_mode: Annotated[
        str,
        typer.Option(
            help="scale (bisect the length of ROME's value change) | clamp (re-optimise per probe)."
        ),
    ] = "scale",
    flip_iters: Annotated[int, typer.Option(help="Bisection steps of the flip norm.")] = 8,
    hparams: Hparams = None,
    keep: Annotated[
        str,
        typer.Option(
            help="known (the model predicts the true target) | rank (true above the new target) | all."
        ),
    ] = "known",
    min_p: Annotated[float, typer.Option(help="--keep rank: the least P(true) of an included fact.")] = 0.02,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals.")] = 2000,
    figure_format: FigureFormat = "png,svg",
    seed: Annotated[int, typer.Option(help="Seed of the false targets, the noise and the bootstrap.")] = 0,
    device: Device = None,
    dtype: Dtype = None,
    threads: Threads = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Processes that edit facts in parallel, each loading the model and sharing --threads."
        ),
    ] = 1,
) -> None:
    """Which facts are easy to edit: representation shape (causal and neuron traces) against ROME editability."""
    figures = formats(figure_format)
    sweep = int_list(layers, "--layers")
    check_facts_file(facts)
    check_study_options(
        keep=keep, min_p=min_p, flip_mode=flip_mode, prefixes=prefixes, trace_every=trace_every,
        samples=samples, steps=steps, flip_iters=flip_iters, n_boot=bootstrap, workers=workers,
    )  # fmt: skip
    lm = load_model_checked(model, device, dtype, threads)
    from neuronmap.study.api import study_editability

    s = study_editability(
        lm,
        facts,
        out,
        limit=limit,
        layers=sweep,
        trace_every=trace_every,
        samples=samples,
        steps=steps,
        prefixes=prefixes,
        flip_mode=flip_mode,
        flip_iters=flip_iters,
        hparams=hparams,
        keep=keep,
        min_p=min_p,
        n_boot=bootstrap,
        seed=seed,
        formats=figures,
        workers=workers,
    )
    _show(
        s,
        f"[bold]{out}[/]: {s['studied']} of {s['facts']} facts studied ({s['unknown']} not known), {s['seconds']} s",
    )


def _show(summary: dict[str, Any], head: str) -> None:
    """A study's summary line, its conclusion and where its report is."""
    con = stdout()
    con.print(head)
    for line in summary["conclusion"]:
        con.print(f"- {line}", markup=False, highlight=False)
    con.print(f"report: {summary['report'][0]}, {summary['report'][1]}")


@study_app.command("report")
def study_report_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="The finished study's folder.")],
    figure_format: FigureFormat = "png,svg",
) -> None:
    """Remake a finished study's statistics, conclusion, report and figures from its tables (no model work)."""
    figures = formats(figure_format)
    from neuronmap.study.api import study_report

    s = study_report(out, formats=figures)
    _show(s, f"[bold]{out}[/]: statistics and report of {s['studied']} facts made again")
