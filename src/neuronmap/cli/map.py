"""``neuronmap map``: the map stage (``graph``) over a traced run, and its summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neuronmap.cli.common import app, check_run, console, fmt, stdout
from neuronmap.cli.options import Address


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
        str,
        typer.Option(help="spectral: k values, LOW..HIGH or a comma list; one is chosen against the null."),
    ] = "2..50",
    k_select: Annotated[
        str,
        typer.Option(help="spectral: choose k by the n-cut's z | gap (null mean - n-cut) vs the pairs null."),
    ] = "z",
    scope: Annotated[
        str, typer.Option(help="cross-layer (all neurons together) | within-layer (each layer alone).")
    ] = "cross-layer",
    null_samples: Annotated[
        int, typer.Option(help="Shuffled networks per null kind for clusterability p and z (0: skip).")
    ] = 20,
    nulls: Annotated[
        str,
        typer.Option(
            help="Null kinds drawn, comma-separated: swaps,pairs,edges (fewer: cheaper; the test reads swaps)."
        ),
    ] = "edges,pairs,swaps",
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
    ] = 250_000,
    seed: Annotated[int, typer.Option(help="Seed of the clustering, the nulls and the token groups.")] = 0,
    drop_generic: Annotated[
        bool,
        typer.Option(
            "--drop-generic",
            help="Leave out generic neurons (scored in >25% of contexts over >10 tokens; neurons.parquet).",
        ),
    ] = False,
    embeddings: Annotated[
        str | None,
        typer.Option(
            help="Token embeddings (.npy, or .safetensors with lm_head/embed_tokens) for cluster coherence; "
            "default: the traced model's own weights file."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace an existing map made with other options.")
    ] = False,
    backend: Annotated[
        str, typer.Option(help="local | ray (the projections' row blocks run as Ray tasks; same map).")
    ] = "local",
    address: Address = None,
    workers: Annotated[
        int, typer.Option("--workers", help="ray: CPUs of the local cluster started when no --address.")
    ] = 2,
) -> None:
    """Map a traced run: neuron-token graph, neuron graph, communities, clusterability, tokens (RUN/graph/)."""
    from neuronmap.graph.config import BACKENDS, MapConfig, _choice  # numpy-, scipy- and pandas-free

    given = dict(locals())
    params = {k: v for k, v in given.items() if k in MapConfig.__dataclass_fields__}
    MapConfig(**params)
    _choice("backend", backend, BACKENDS)
    check_run(run)
    from neuronmap.graph.api import map_run

    result = map_run(
        run, force=force, progress=True, backend=backend, address=address, workers=workers, **params
    )
    if result.reused:
        console.print(f"{run}: already mapped with these options (use --force to redo it)")
    _print_map_summary(result.summary, result.path, result.null_seconds)


_SHUFFLED = {"documents": " between documents", "within documents": " within documents"}


def _print_map_summary(s: dict, path: Path, null_seconds: float | None = None) -> None:
    from rich.table import Table

    out = stdout()
    c = s["counts"]
    out.print(
        f"[bold]{path}[/]: {c['neurons']:,} neurons, {c['tokens']:,} tokens, {c['edges']:,} edges -> "
        f"[bold]{c['clusters']}[/] clusters ({c['merged_clusters']} after merging, {c['singletons']} singletons); "
        f"{s['method']} on the {s['projection']} projection, {s['scope']}"
    )
    out.print(
        f"modularity {fmt(s.get('modularity_full'), '.3f')} on the full projection, "
        f"{fmt(s.get('modularity_pruned', s.get('modularity')), '.3f')} on the pruned graph that was clustered; "
        f"n-cut {fmt(s['ncut'], '.2f')}"
    )
    test = s.get("clusterability")
    if test:
        where = "" if test["p"] is not None else " (per layer: see the table)"
        took = "" if null_seconds is None else f", {null_seconds:.1f} s of null samples"
        out.print(
            f"clusterability vs the {test['null']} null: p {fmt(test['p'], '.3g')}, z {fmt(test['z'], '.1f')}"
            f"{where}; {test['samples']} samples per null, p >= {fmt(test['p_floor'], '.3g')}; "
            f"{test['cost']['selection_networks'] + test['cost']['test_networks']} null networks{took}"
        )
        out.print(f"  k: {test['selection']}")
        if test.get("p_floor_note"):
            out.print(f"  note: {test['p_floor_note']}")
    coherence = s.get("coherence") or {}
    if coherence.get("source"):
        passing = coherence["coherent"]
        bins = coherence.get("frequency_bins") or 1
        matched = f" matched in {bins} frequency bins" if bins > 1 else ""
        out.print(
            f"coherent clusters (top-{coherence['tokens']} token embeddings vs {coherence['draws']} random sets"
            f"{matched}, BH q <= {coherence['alpha']}): {len(passing)} of {coherence['tested']} tested"
            + (
                f" ({', '.join(f'#{c}' for c in passing[:20])}{' ...' if len(passing) > 20 else ''})"
                if passing
                else ""
            )
            + f", holding {coherence['coherent_neuron_share']:.1%} of the neurons"
        )
    elif coherence.get("note"):
        out.print(coherence["note"])
    for column, g in (s.get("groups") or {}).items():
        out.print(
            f"group {column!r}: AMI(dominant cluster, {column}) {fmt(g['ami'], '.3f')}, p {fmt(g['p'], '.3g')} "
            + (
                f"({g['samples']} label shuffles{_SHUFFLED.get(g.get('shuffle'), '')}, "
                f"null mean {fmt(g['null_mean'], '.3f')})"
                if g["samples"]
                else f"({g.get('note', 'not tested')})"
            )
            + f" over {g['contexts']} contexts"
        )
    generic = s.get("generic") or {}
    if generic.get("neurons"):
        names = ", ".join(f"L{n['layer']}/N{n['neuron']}" for n in generic["neurons"][:8])
        more = " ..." if len(generic["neurons"]) > 8 else ""
        out.print(
            f"generic neurons ({generic['rule']}): {names}{more}"
            + (" - left out of the map" if generic["dropped"] else "; --drop-generic leaves them out")
        )
    units = Table(
        "scope",
        "neurons",
        "clusters",
        "modularity (full / pruned)",
        "k",
        "p / z (swaps)",
        "p / z (pairs)",
        "p / z (edges)",
        "ARI",
    )
    for u in s["units"]:
        test = u["clusterability"] or {}
        cells = [
            f"{fmt(test[kind]['p'], '.3f')} / {fmt(test[kind]['z'], '.1f')}" if kind in test else "-"
            for kind in ("swaps", "pairs", "edges")
        ]
        ari = (u["stability"] or {}).get("mean")
        scope = "all layers" if u["layer"] is None else f"layer {u['layer']}"
        units.add_row(
            scope,
            str(u["neurons"]),
            str(u["clusters"]),
            f"{fmt(u.get('modularity_full'), '.3f')} / {fmt(u.get('modularity_pruned', u.get('modularity')), '.3f')}",
            fmt(u["k"], "d"),
            *cells,
            fmt(ari, ".2f"),
        )
    out.print(units)
    largest = Table("cluster", "size", "layers (neurons)", "coherent", "top tokens", title="largest clusters")
    for cl in s["largest_clusters"]:
        layers = sorted(cl["layers"].items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{layer}:{count}" for layer, count in layers[:4]) + (
            " ..." if len(layers) > 4 else ""
        )
        coherent = "-" if cl.get("coherence") is None else ("yes" if cl["coherent"] else "no")
        largest.add_row(
            str(cl["cluster"]),
            str(cl["size"]),
            shown,
            coherent,
            " ".join(repr(t) for t in cl["top_tokens"][:8]),
        )
    out.print(largest)
    for note in s["notes"]:
        out.print(f"note: {note}")
