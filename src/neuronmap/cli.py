"""The ``neuronmap`` command: one sub-command per stage, each a thin shell over a Python function.

User mistakes raise ``NeuronmapError``; ``main`` prints them as one line on stderr and exits 2.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from neuronmap.errors import NeuronmapError

app = typer.Typer(
    name="neuronmap",
    help="Map what the MLP neurons of a transformer language model do.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)


def _int_list(value: str | None, option: str) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise NeuronmapError(
            f"{option} takes comma-separated integers, e.g. 0,5,-1 (got {value!r})"
        ) from None


# ---- models ----------------------------------------------------------------------------------------------
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
    Console().print(table)
    Console().print(
        "tiny test models (built in code): tiny-gpt2, tiny-llama, tiny-neox, tiny-gemma, tiny-bert"
    )


# ---- trace -----------------------------------------------------------------------------------------------
@app.command("trace")
def trace_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    model: Annotated[
        str, typer.Option(help="Embedded name, tiny-*, local folder or hub id.")
    ] = "smollm2-135m",
    contexts: Annotated[
        str, typer.Option(help="builtin:facts, builtin:wiki[:N], or a .jsonl/.csv/.tsv/.txt/.json file.")
    ] = "builtin:facts",
    method: Annotated[
        str, typer.Option(help="attribution | integrated-gradients | ablation | causal")
    ] = "attribution",
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="Keep the top K neurons per context by |score|.")
    ] = 100,
    threshold: Annotated[float | None, typer.Option(help="Keep neurons with |score| >= this.")] = None,
    layers: Annotated[
        str | None, typer.Option(help="Comma-separated layers (negative counts from the end); default all.")
    ] = None,
    positions: Annotated[
        str | None, typer.Option(help="target|all (causal: subject|all): where neurons are scored.")
    ] = None,
    per_position: Annotated[
        bool, typer.Option("--per-position", help="Keep one score per position (with --positions all).")
    ] = False,
    steps: Annotated[int, typer.Option(help="integrated-gradients steps.")] = 20,
    samples: Annotated[int, typer.Option(help="causal: noise draws per context.")] = 10,
    noise: Annotated[float, typer.Option(help="causal: noise std as a multiple of the embedding std.")] = 3.0,
    candidates: Annotated[
        int, typer.Option(help="ablation/causal: neurons scored exactly per context (top by attribution).")
    ] = 256,
    ablate: Annotated[
        str, typer.Option(help="ablation value: zero | mean (over the contexts' tokens).")
    ] = "zero",
    keep: Annotated[
        str, typer.Option(help="known (targets predicted top-1) | all | auto (known for builtin:facts).")
    ] = "auto",
    limit: Annotated[int | None, typer.Option(help="Trace only the first N contexts.")] = None,
    seed: Annotated[int, typer.Option(help="Seed for sampling and noise.")] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Contexts per forward pass.")] = 8,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 | bfloat16 | float16 | float64.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing trace in --out.")] = False,
) -> None:
    """Score how much each MLP neuron matters for each context's target, into a run directory."""
    from neuronmap.trace.runner import TraceConfig, trace

    config = TraceConfig(
        model=model,
        contexts=contexts,
        method=method,
        top_k=top_k,
        threshold=threshold,
        layers=_int_list(layers, "--layers"),
        positions=positions,
        per_position=per_position,
        steps=steps,
        samples=samples,
        noise=noise,
        candidates=candidates,
        ablate=ablate,
        keep=keep,
        limit=limit,
        seed=seed,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
        threads=threads,
    )
    result = trace(config, out, force=force)
    s = result.summary
    if result.skipped:
        console.print(f"{out}: trace already complete (use --force to redo it)")
    out_console = Console(soft_wrap=True)
    out_console.print(
        f"[bold]{out}[/]: {s['contexts_kept']} of {s['contexts_total']} contexts kept "
        f"({s['contexts_dropped']} dropped), {s['score_rows']} scores over {s['neurons_with_scores']} neurons, "
        f"{s['seconds']} s"
    )
    out_console.print("top neurons (layer:neuron total score, contexts):")
    for n in s["top_neurons"]:
        out_console.print(f"  L{n['layer']}:{n['neuron']}  {n['total_score']:+.4f}  ({n['contexts']})")


# ---- map (graph stage) ------------------------------------------------------------------------------------
@app.command("map")
def map_cmd(
    run: Annotated[Path, typer.Argument(help="Run directory written by `neuronmap trace`.")],
    edge_score: Annotated[
        str, typer.Option(help="Score -> edge weight: positive (max(s,0)) | abs | signed.")
    ] = "positive",
    min_edge: Annotated[
        float, typer.Option(help="Drop a context's scores below this (after --edge-score), before summing.")
    ] = 0.0,
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="Keep the top K scores of each context, before summing.")
    ] = None,
    token_field: Annotated[
        str, typer.Option(help="target (first target token) | input (token at the scored position).")
    ] = "target",
    projection: Annotated[
        str, typer.Option(help="Neuron graph: weighted | collaboration (networkx, Newman) | cosine.")
    ] = "weighted",
    neighbors: Annotated[
        int, typer.Option(help="Keep each neuron's top N neighbours (0: exact projection, small graphs).")
    ] = 64,
    threshold: Annotated[
        float | None, typer.Option(help="Keep neuron-graph weights >= this (with or without --neighbors).")
    ] = None,
    method: Annotated[str, typer.Option(help="Communities: leiden | louvain | spectral.")] = "leiden",
    resolution: Annotated[float, typer.Option(help="Modularity resolution (leiden, louvain).")] = 1.0,
    k_range: Annotated[
        str, typer.Option(help="spectral: k values, LOW..HIGH or a comma list; chosen by z against nulls.")
    ] = "2..50",
    scope: Annotated[
        str, typer.Option(help="cross-layer (all neurons together) | within-layer (each layer alone).")
    ] = "cross-layer",
    null_samples: Annotated[
        int, typer.Option(help="Shuffled networks per null kind for clusterability p and z (0: skip).")
    ] = 20,
    stability_seeds: Annotated[
        int, typer.Option(help="Extra seeds whose partitions are compared with the main one (ARI).")
    ] = 5,
    merge_threshold: Annotated[
        float, typer.Option(help="Merge clusters whose token profiles have cosine >= this (>1: never).")
    ] = 0.8,
    top_tokens: Annotated[
        int, typer.Option(help="Tokens listed per cluster in cluster_tokens.parquet.")
    ] = 50,
    export: Annotated[
        str, typer.Option(help="Gephi exports: graphml,gexf | graphml | gexf | none.")
    ] = "graphml,gexf",
    export_max_edges: Annotated[
        int, typer.Option(help="Skip the exports when the neuron graph has more edges than this.")
    ] = 1_000_000,
    seed: Annotated[int, typer.Option(help="Seed of the clustering, the nulls and the token groups.")] = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing map made with other options.")
    ] = False,
) -> None:
    """Map a traced run: neuron-token graph, neuron graph, communities, clusterability, tokens (RUN/graph/)."""
    from neuronmap.graph.api import map_run

    result = map_run(
        run,
        force=force,
        progress=True,
        edge_score=edge_score,
        min_edge=min_edge,
        top_k=top_k,
        token_field=token_field,
        projection=projection,
        neighbors=neighbors,
        threshold=threshold,
        method=method,
        resolution=resolution,
        k_range=k_range,
        scope=scope,
        null_samples=null_samples,
        stability_seeds=stability_seeds,
        merge_threshold=merge_threshold,
        top_tokens=top_tokens,
        export=export,
        export_max_edges=export_max_edges,
        seed=seed,
    )
    if result.reused:
        console.print(f"{run}: already mapped with these options (use --force to redo it)")
    _print_map_summary(result.summary, result.path)


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _print_map_summary(s: dict, path: Path) -> None:
    from rich.table import Table

    out = Console(soft_wrap=True)
    c = s["counts"]
    out.print(
        f"[bold]{path}[/]: {c['neurons']:,} neurons, {c['tokens']:,} tokens, {c['edges']:,} edges -> "
        f"[bold]{c['clusters']}[/] clusters ({c['merged_clusters']} after merging, {c['singletons']} singletons); "
        f"{s['method']} on the {s['projection']} projection, {s['scope']}"
    )
    out.print(f"modularity {_fmt(s['modularity'], '.3f')}, n-cut {_fmt(s['ncut'], '.2f')}")
    units = Table("scope", "neurons", "clusters", "modularity", "k", "p / z (pairs)", "p / z (edges)", "ARI")
    for u in s["units"]:
        test = u["clusterability"] or {}
        cells = [
            f"{_fmt(test[kind]['p'], '.3f')} / {_fmt(test[kind]['z'], '.1f')}" if kind in test else "-"
            for kind in ("pairs", "edges")
        ]
        ari = (u["stability"] or {}).get("mean")
        scope = "all layers" if u["layer"] is None else f"layer {u['layer']}"
        units.add_row(
            scope,
            str(u["neurons"]),
            str(u["clusters"]),
            _fmt(u["modularity"], ".3f"),
            _fmt(u["k"], "d"),
            *cells,
            _fmt(ari, ".2f"),
        )
    out.print(units)
    largest = Table("cluster", "size", "layers (neurons)", "top tokens", title="largest clusters")
    for cl in s["largest_clusters"]:
        layers = sorted(cl["layers"].items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{layer}:{count}" for layer, count in layers[:4]) + (
            " ..." if len(layers) > 4 else ""
        )
        largest.add_row(
            str(cl["cluster"]), str(cl["size"]), shown, " ".join(repr(t) for t in cl["top_tokens"][:8])
        )
    out.print(largest)
    for note in s["notes"]:
        out.print(f"note: {note}")


def main() -> None:
    try:
        app(standalone_mode=False)
    except NeuronmapError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors carry their own exit code
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(2 if exc.exit_code == 2 else exc.exit_code)
        raise
