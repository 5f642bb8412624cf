"""``neuronmap verify``: the causal check of a map's clusters."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from neuronmap.cli.common import app, check_run, console, fmt, int_list, stdout
from neuronmap.cli.options import Device, Threads, check_threads, set_threads

if TYPE_CHECKING:
    import pandas as pd


@app.command("verify")
def verify_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory mapped by `neuronmap map`.")],
    clusters: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated cluster ids (default: every cluster of at least --min-size neurons)."
        ),
    ] = None,
    ablate: Annotated[
        str, typer.Option(help="zero | mean (the neurons' mean over the events' tokens).")
    ] = "zero",
    null_samples: Annotated[
        int, typer.Option(help="Random neuron sets per cluster (same neurons per layer); p >= 1/(N+1).")
    ] = 49,
    max_events: Annotated[
        int | None,
        typer.Option(help="Events per cluster: its own (up to half or more), a seeded sample of the others."),
    ] = 256,
    tokens: Annotated[
        int, typer.Option(help="A cluster's tokens: its top N over-represented tokens (lift > 1).")
    ] = 10,
    min_size: Annotated[int, typer.Option(help="Default clusters: those of at least this many neurons.")] = 2,
    seed: Annotated[
        int, typer.Option(help="Seed of the event samples, the null sets and the bootstrap.")
    ] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Rows per forward pass.")] = 16,
    device: Device = None,
    threads: Threads = None,
    force: Annotated[
        bool, typer.Option("--force", help="Check again even if done with these options.")
    ] = False,
) -> None:
    """Causal check of the clusters: ablate each cluster's neurons; do its own tokens lose more log p than others?"""
    from neuronmap.verify.config import VerifyConfig  # torch-, numpy- and pandas-free

    check_threads(threads)
    chosen = int_list(clusters, "--clusters")
    VerifyConfig(
        None if chosen is None else tuple(chosen), ablate, null_samples, max_events, tokens, min_size, seed
    )
    check_run(run)
    from neuronmap.verify import verify_clusters

    set_threads(threads)
    result = verify_clusters(run, chosen, ablate=ablate, null_samples=null_samples,
                             max_events=max_events, tokens=tokens, min_size=min_size, seed=seed, device=device,
                             batch_size=batch_size, force=force, progress=True)  # fmt: skip
    if result.reused:
        console.print(f"{run}: already verified with these options (use --force to redo it)")
    _print_verify(result.table, result.summary)


def _print_verify(table: pd.DataFrame, s: dict[str, Any]) -> None:
    from rich.table import Table

    out = stdout()
    table = table.astype(object).where(table.notna(), None)  # untested: "-"
    shown = Table(
        title=f"causal check ({s['params']['ablate']} ablation, {s['params']['null_samples']} null sets)"
    )
    for col in ("cluster", "neurons", "events in/out", "effect in", "effect out", "diff [95% CI]", "null", "p",
                "q", "passes"):  # fmt: skip
        shown.add_column(col)
    for r in table.itertuples():
        shown.add_row(
            f"#{r.cluster}",
            str(r.n_neurons),
            f"{r.n_events_in}/{r.n_events_out}",
            fmt(r.effect_in, ".3f"),
            fmt(r.effect_out, ".3f"),
            f"{fmt(r.diff, '.3f')} [{fmt(r.ci_low, '.3f')}, {fmt(r.ci_high, '.3f')}]",
            f"{fmt(r.null_mean, '.3f')} ± {fmt(r.null_sd, '.3f')}",
            fmt(r.p, ".3g"),
            fmt(r.p_adjusted, ".3g"),
            "yes" if r.passes else "no",
        )
    out.print(shown)
    share = s.get("share_passing")
    out.print(
        f"{len(s['passing'])} of {s['tested']} tested clusters pass ({fmt(share, '.0%')}; "
        f"{fmt(s.get('passing_neuron_share'), '.0%')} of the map's neurons): {s['rule']}; p >= {s['p_floor']:.3g}"
    )
    untested = s["clusters"] - s["tested"]
    if untested:
        out.print(f"{untested} cluster(s) not tested: fewer than 2 events with, or without, their tokens")
