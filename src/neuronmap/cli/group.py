"""``neuronmap group``: the group stage (context groups: part of speech, word sense)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neuronmap.cli.common import app, check_run, stdout
from neuronmap.cli.options import Threads, check_threads, set_threads
from neuronmap.contexts.group_config import SenseParams, parse_groupings


@app.command("group")
def group_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory written by `neuronmap trace`.")],
    by: Annotated[str, typer.Option("--by", help="pos | sense | pos,sense.")],
    model: Annotated[
        str | None, typer.Option(help="sense: the traced model, if run.json's cannot be loaded here.")
    ] = None,
    layer: Annotated[
        int | None, typer.Option(help="sense: hidden states after this layer (default the middle one).")
    ] = None,
    min_contexts: Annotated[
        int, typer.Option("--min-contexts", help="sense: words in fewer contexts get no sense.")
    ] = 4,
    max_senses: Annotated[int, typer.Option("--max-senses", help="sense: most senses tried per word.")] = 4,
    min_silhouette: Annotated[
        float,
        typer.Option(
            "--min-silhouette", help="sense: split a word only when the cosine silhouette reaches this."
        ),
    ] = 0.4,
    batch_size: Annotated[int, typer.Option("--batch-size", help="sense: contexts per forward pass.")] = 16,
    seed: Annotated[int, typer.Option(help="sense: seed of k-means.")] = 0,
    threads: Threads = None,
    force: Annotated[
        bool, typer.Option("--force", help="Group again even if done with these options.")
    ] = False,
) -> None:
    """Add context groups to a traced run: part of speech (spaCy) and/or word sense of each target."""
    check_threads(threads)
    parse_groupings(by)
    params = SenseParams(layer, min_contexts, max_senses, min_silhouette, batch_size, seed)
    params.validate()
    check_run(run)
    from neuronmap.contexts.grouping import group_run

    set_threads(threads)
    record = group_run(run, by, model=model, sense=params, force=force)
    con = stdout()
    for name, info in record.items():
        summary = info["summary"]
        if name == "pos":
            detail = ", ".join(f"{tag} {n}" for tag, n in summary["values"].items())
        else:
            detail = (
                f"{summary['words']} words in enough contexts, {summary['words_with_senses']} with several senses, "
                f"{summary['senses']} senses over {summary['contexts_with_sense']} contexts (see senses.parquet)"
            )
        con.print(f"[bold]{name}[/]: {detail}")
