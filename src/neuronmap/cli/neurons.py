"""``neuronmap neurons``: neuron dashboards of a mapped run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neuronmap.cli.common import app, check_run, stdout
from neuronmap.cli.options import Device, Threads, check_threads, set_threads


@app.command("neurons")
def neurons_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory mapped by `neuronmap map`.")],
    top_tokens: Annotated[
        int, typer.Option("--top-tokens", help="Promoted and suppressed output tokens per neuron.")
    ] = 10,
    examples: Annotated[int, typer.Option("--examples", help="Top-activating examples per neuron.")] = 8,
    before: Annotated[int, typer.Option(help="Tokens shown before an example's position.")] = 19,
    after: Annotated[int, typer.Option(help="Tokens shown after an example's position.")] = 4,
    max_texts: Annotated[
        int | None,
        typer.Option("--max-texts", help="Only the first N documents (each-token runs) or contexts."),
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per forward pass.")] = 8,
    model: Annotated[
        str | None, typer.Option(help="The traced model, if run.json's cannot be loaded here.")
    ] = None,
    device: Device = None,
    threads: Threads = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace dashboards made with other options.")
    ] = False,
) -> None:
    """Neuron dashboards of a mapped run: output-token weights, top-activating examples, activation histograms."""
    from neuronmap.neurons.config import NeuronsConfig  # torch-free

    check_threads(threads)
    NeuronsConfig(top_tokens, examples, before, after, max_texts, batch_size=batch_size).validate()
    check_run(run)
    from neuronmap.neurons import neurons_run

    set_threads(threads)
    result = neurons_run(run, model=model, device=device, force=force, progress=True, top_tokens=top_tokens,
                         examples=examples, before=before, after=after, max_texts=max_texts,
                         batch_size=batch_size)  # fmt: skip
    s = result.summary
    con = stdout()
    state = "reused" if result.reused else "written"
    con.print(
        f"[bold]neuron dashboards {state}[/] in {result.path}: {s.get('neurons', 0):,} neurons, "
        f"{s.get('examples', 0):,} examples from {s.get('positions', 0):,} positions of {s.get('texts', 0):,} texts"
    )
    logits = result.logits
    if len(logits):
        first = logits.iloc[0]
        mine = logits[(logits["layer"] == first["layer"]) & (logits["neuron"] == first["neuron"])]
        up = " ".join(repr(t) for t in mine[mine["sign"] > 0]["token"].head(5))
        down = " ".join(repr(t) for t in mine[mine["sign"] < 0]["token"].head(5))
        con.print(f"L{first['layer']}/{first['neuron']} promotes {up}; suppresses {down}")
