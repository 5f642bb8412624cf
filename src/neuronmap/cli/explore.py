"""``neuronmap explore`` and ``neuronmap figures``: the explore stage."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from neuronmap.cli.common import app, check_run, formats, stdout
from neuronmap.errors import NeuronmapError


@app.command("explore")
def explore_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory mapped by `neuronmap map`.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Where to write the page (default RUN/explorer.html).")
    ] = None,
    figures: Annotated[
        bool, typer.Option("--figures", help="Also draw the figures (as `neuronmap figures`).")
    ] = False,
    serve: Annotated[
        bool, typer.Option("--serve", help="Then serve the run's files over HTTP until Ctrl-C.")
    ] = False,
    host: Annotated[str, typer.Option(help="--serve: address to bind (default: this machine only).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="--serve: port (0 picks a free one).")] = 8000,
) -> None:
    """Write the run's interactive page: cluster map, cluster and neuron detail, layers, groups, token search."""
    check_run(run)
    from neuronmap.explore.api import explore

    result = explore(run, figures=figures, out=out)
    s = result.summary
    con = stdout()
    con.print(f"[bold]page: {result.page}[/]")
    con.print(
        f"{s['clusters']} clusters ({s['merged_clusters']} after merging) of {s['neurons']:,} neurons, "
        f"{s['method']} {s['scope']}, {s['contexts']:,} contexts; clusterability {s['clusterability']}"
    )
    if s["groups"]:
        con.print("context groups: " + ", ".join(f"{c} ({n} values)" for c, n in s["groups"].items()))
    if s.get("targets"):
        con.print(s["targets"]["line"], markup=False, highlight=False)
    con.print("most token-specific clusters:")
    for c in s["specific"]:
        con.print(
            f"  #{c['cluster']} ({c['size']} neurons, {c['bits']:.2f} bits): {' '.join(repr(t) for t in c['tokens'])}"
        )
    for path in result.figures:
        con.print(f"figure: {path}")
    if serve:
        from neuronmap.explore.serve import address, make_server

        server = make_server(run, host, port)
        con.print(f"serving {run} at {address(server)} (Ctrl-C to stop)")
        sys.stdout.flush()
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()


@app.command("figures")
def figures_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory mapped by `neuronmap map`.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for the figures (default RUN/figures).")
    ] = None,
    figure_format: Annotated[str, typer.Option("--format", help="png,svg | png | svg.")] = "png,svg",
) -> None:
    """Figures for reports: cluster map, layers x clusters, clusterability curve, token groups, groups x clusters."""
    chosen = formats(figure_format)
    if not chosen:
        raise NeuronmapError(
            "--format none: `neuronmap figures` is for writing figures; give png, svg or both"
        )
    check_run(run)
    from neuronmap.explore.figures import write_figures

    con = stdout()
    for path in write_figures(run, out, tuple(chosen)):
        con.print(f"figure: {path}")
