"""``neuronmap models``: the embedded models."""

from __future__ import annotations

from typing import Annotated

import typer

from neuronmap.cli.common import app, console, stdout
from neuronmap.errors import NeuronmapError


@app.command("models")
def models_cmd(
    prepare: Annotated[
        list[str] | None, typer.Option("--prepare", help="Dequantise and cache this embedded model now.")
    ] = None,
) -> None:
    """List the embedded models with their size and cache state."""
    from rich.table import Table

    from neuronmap.models.registry import EMBEDDED, list_models
    from neuronmap.models.registry import prepare as prepare_model

    for name in prepare or []:
        if name not in EMBEDDED:
            raise NeuronmapError(f"unknown embedded model '{name}'; embedded: {', '.join(EMBEDDED)}")
        console.print(f"preparing {name} ...")
        console.print(f"{name}: ready at {prepare_model(name)}")
    table = Table(title="embedded models")
    for col in ("name", "kind", "description", "installed", "cached", "size MB"):
        table.add_column(col)
    for row in list_models():
        table.add_row(
            str(row["name"]),
            str(row["kind"]),
            str(row["description"]),
            "yes" if row["installed"] else f"no ({row['install']})",
            "yes" if row["cached"] else "no",
            "" if row["size_mb"] is None else str(row["size_mb"]),
        )
    out = stdout()
    out.print(table)
    out.print("tiny test models (built in code): tiny-gpt2, tiny-llama, tiny-neox, tiny-gemma, tiny-bert")
