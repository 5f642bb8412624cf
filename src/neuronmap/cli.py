"""The ``neuronmap`` command: one sub-command per stage, each a thin shell over a Python function.

User mistakes raise ``NeuronmapError``; ``main`` prints them as one line on stderr and exits 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from neuronmap.errors import NeuronmapError
from neuronmap.quiet import quiet_libraries

app = typer.Typer(
    name="neuronmap",
    help="Map what the MLP neurons of a transformer language model do.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)


def _stdout() -> Console:
    """The console for results. Piped into a file or ``grep``, rich would wrap tables at 80 columns and split
    their rows over several lines; there they keep their natural width (COLUMNS still sets one)."""
    piped = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(soft_wrap=True, width=10_000 if piped else None)


def _int_list(value: str | None, option: str) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise NeuronmapError(
            f"{option} takes comma-separated integers, e.g. 0,5,-1 (got {value!r})"
        ) from None


# Shared by every command that runs a language model on the user's text.
_TRUNCATE = Annotated[
    str | None,
    typer.Option(
        "--truncate",
        help="left: cut an input longer than the model's window to its last tokens (default: refuse it).",
    ),
]
_MAX_MEMORY = Annotated[
    str | None,
    typer.Option(
        "--max-memory",
        help="Memory a batch may take, e.g. 6GB, 800MB or 50% (default: 70% of the memory available at the start).",
    ),
]


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
    out = _stdout()
    out.print(table)
    out.print("tiny test models (built in code): tiny-gpt2, tiny-llama, tiny-neox, tiny-gemma, tiny-bert")


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
        int | None,
        typer.Option(
            "--top-k", help="Keep the top K neurons per context by |score| (default 100; each token: 32)."
        ),
    ] = None,
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
    ig_metric: Annotated[
        str,
        typer.Option(
            "--ig-metric",
            help="integrated-gradients: logprob | prob (the target's probability, as Dai et al.).",
        ),
    ] = "logprob",
    ig_rule: Annotated[
        str,
        typer.Option(
            "--ig-rule",
            help="integrated-gradients points: midpoint | right (Riemann) | linspace (knowledge-neurons').",
        ),
    ] = "midpoint",
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
    part_size: Annotated[
        int, typer.Option("--part-size", help="Contexts per part (the unit of resumption and of Ray work).")
    ] = 256,
    backend: Annotated[str, typer.Option(help="local | ray (parts scored by Ray actors).")] = "local",
    address: Annotated[
        str | None, typer.Option(help="Ray cluster address (ray: 'auto' or host:port); default starts one.")
    ] = None,
    workers: Annotated[int, typer.Option(help="Ray actors, each loading the model once.")] = 2,
    gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker", help="GPUs per Ray actor.")] = 0.0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing trace in --out.")] = False,
    truncate: _TRUNCATE = None,
    max_memory: _MAX_MEMORY = None,
    each_token: Annotated[
        bool,
        typer.Option(
            "--each-token",
            help="Contexts are documents; every token predicts the next (methods: direct, attribution, activation).",
        ),
    ] = False,
    min_prefix: Annotated[
        int, typer.Option("--min-prefix", help="--each-token: tokens seen before the first prediction.")
    ] = 8,
    group_by: Annotated[
        str | None,
        typer.Option("--group-by", help="Then group the contexts: pos and/or sense (see `neuronmap group`)."),
    ] = None,
) -> None:
    """Score how much each MLP neuron matters for each context's target, into a run directory."""
    from neuronmap.trace.runner import TraceConfig, trace_run

    config = TraceConfig(
        model=model,
        contexts=contexts,
        method=method,
        top_k=top_k if top_k is not None else (32 if each_token else 100),
        threshold=threshold,
        layers=_int_list(layers, "--layers"),
        positions=positions,
        per_position=per_position,
        steps=steps,
        ig_metric=ig_metric,
        ig_rule=ig_rule,
        samples=samples,
        noise=noise,
        candidates=candidates,
        ablate=ablate,
        keep=keep,
        limit=limit,
        seed=seed,
        batch_size=batch_size,
        part_size=part_size,
        device=device,
        dtype=dtype,
        threads=threads,
        backend=backend,
        address=address,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        truncate=truncate,
        max_memory=max_memory,
        each_token=each_token,
        min_prefix=min_prefix,
        group_by=group_by,
    )
    result = trace_run(config, out, force=force)
    s = result.summary
    if result.skipped:
        console.print(f"{out}: trace already complete (use --force to redo it)")
    out_console = _stdout()
    if each_token:
        out_console.print(f"[bold]{out}[/]: {s['contexts_total']} events of {s['documents']} documents")
    out_console.print(
        f"[bold]{out}[/]: {s['contexts_kept']} of {s['contexts_total']} contexts kept "
        f"({s['contexts_dropped']} dropped), {s['score_rows']} scores over {s['neurons_with_scores']} neurons, "
        f"{s['seconds']} s"
    )
    if s.get("targets"):  # runs traced before it was recorded have none
        from neuronmap.trace.targets import target_line

        line = target_line(s["targets"], "events", hint=None) if each_token else target_line(s["targets"])
        out_console.print(line, markup=False, highlight=False)
    if "truncated" in s:
        t = s["truncated"]
        out_console.print(
            f"--truncate left: {t['contexts']} contexts cut to the model's window "
            f"({t['tokens_cut']} tokens in all, at most {t['most_cut']} from one)"
        )
    out_console.print("top neurons (layer:neuron total score, contexts):")
    for n in s["top_neurons"]:
        out_console.print(f"  L{n['layer']}:{n['neuron']}  {n['total_score']:+.4f}  ({n['contexts']})")
    if group_by:
        out_console.print(f"contexts grouped by {group_by} (columns of {out / 'contexts.parquet'})")


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
    address: Annotated[
        str | None,
        typer.Option("--address", help="Ray cluster address (ray: 'auto' or host:port); default starts one."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="ray: CPUs of the local cluster started when no --address.")
    ] = 2,
) -> None:
    """Map a traced run: neuron-token graph, neuron graph, communities, clusterability, tokens (RUN/graph/)."""
    from neuronmap.graph.api import map_run

    result = map_run(
        run,
        force=force,
        progress=True,
        backend=backend,
        address=address,
        workers=workers,
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
        k_select=k_select,
        scope=scope,
        null_samples=null_samples,
        nulls=nulls,
        stability_seeds=stability_seeds,
        merge_threshold=merge_threshold,
        top_tokens=top_tokens,
        export=export,
        export_max_edges=export_max_edges,
        seed=seed,
        drop_generic=drop_generic,
        embeddings=embeddings,
    )
    if result.reused:
        console.print(f"{run}: already mapped with these options (use --force to redo it)")
    _print_map_summary(result.summary, result.path, result.null_seconds)


_SHUFFLED = {"documents": " between documents", "within documents": " within documents"}


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _print_map_summary(s: dict, path: Path, null_seconds: float | None = None) -> None:
    from rich.table import Table

    out = _stdout()
    c = s["counts"]
    out.print(
        f"[bold]{path}[/]: {c['neurons']:,} neurons, {c['tokens']:,} tokens, {c['edges']:,} edges -> "
        f"[bold]{c['clusters']}[/] clusters ({c['merged_clusters']} after merging, {c['singletons']} singletons); "
        f"{s['method']} on the {s['projection']} projection, {s['scope']}"
    )
    out.print(
        f"modularity {_fmt(s.get('modularity_full'), '.3f')} on the full projection, "
        f"{_fmt(s.get('modularity_pruned', s.get('modularity')), '.3f')} on the pruned graph that was clustered; "
        f"n-cut {_fmt(s['ncut'], '.2f')}"
    )
    test = s.get("clusterability")
    if test:
        where = "" if test["p"] is not None else " (per layer: see the table)"
        took = "" if null_seconds is None else f", {null_seconds:.1f} s of null samples"
        out.print(
            f"clusterability vs the {test['null']} null: p {_fmt(test['p'], '.3g')}, z {_fmt(test['z'], '.1f')}"
            f"{where}; {test['samples']} samples per null, p >= {_fmt(test['p_floor'], '.3g')}; "
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
            f"group {column!r}: AMI(dominant cluster, {column}) {_fmt(g['ami'], '.3f')}, p {_fmt(g['p'], '.3g')} "
            + (
                f"({g['samples']} label shuffles{_SHUFFLED.get(g.get('shuffle'), '')}, "
                f"null mean {_fmt(g['null_mean'], '.3f')})"
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
            f"{_fmt(test[kind]['p'], '.3f')} / {_fmt(test[kind]['z'], '.1f')}" if kind in test else "-"
            for kind in ("swaps", "pairs", "edges")
        ]
        ari = (u["stability"] or {}).get("mean")
        scope = "all layers" if u["layer"] is None else f"layer {u['layer']}"
        units.add_row(
            scope,
            str(u["neurons"]),
            str(u["clusters"]),
            f"{_fmt(u.get('modularity_full'), '.3f')} / {_fmt(u.get('modularity_pruned', u.get('modularity')), '.3f')}",
            _fmt(u["k"], "d"),
            *cells,
            _fmt(ari, ".2f"),
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


# ---- verify (causal check of the clusters) ----------------------------------------------------------------
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
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Check again even if done with these options.")
    ] = False,
) -> None:
    """Causal check of the clusters: ablate each cluster's neurons; do its own tokens lose more log p than others?"""
    from neuronmap.verify import verify_clusters

    if threads is not None:
        import torch

        if threads < 1:
            raise NeuronmapError("--threads must be at least 1")
        torch.set_num_threads(threads)
    result = verify_clusters(run, _int_list(clusters, "--clusters"), ablate=ablate, null_samples=null_samples,
                             max_events=max_events, tokens=tokens, min_size=min_size, seed=seed, device=device,
                             batch_size=batch_size, force=force, progress=True)  # fmt: skip
    if result.reused:
        console.print(f"{run}: already verified with these options (use --force to redo it)")
    _print_verify(result.table, result.summary)


def _print_verify(table, s: dict) -> None:  # type: ignore[no-untyped-def]
    from rich.table import Table

    out = _stdout()
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
            _fmt(r.effect_in, ".3f"),
            _fmt(r.effect_out, ".3f"),
            f"{_fmt(r.diff, '.3f')} [{_fmt(r.ci_low, '.3f')}, {_fmt(r.ci_high, '.3f')}]",
            f"{_fmt(r.null_mean, '.3f')} ± {_fmt(r.null_sd, '.3f')}",
            _fmt(r.p, ".3g"),
            _fmt(r.p_adjusted, ".3g"),
            "yes" if r.passes else "no",
        )
    out.print(shown)
    share = s.get("share_passing")
    out.print(
        f"{len(s['passing'])} of {s['tested']} tested clusters pass ({_fmt(share, '.0%')}; "
        f"{_fmt(s.get('passing_neuron_share'), '.0%')} of the map's neurons): {s['rule']}; p >= {s['p_floor']:.3g}"
    )
    untested = s["clusters"] - s["tested"]
    if untested:
        out.print(f"{untested} cluster(s) not tested: fewer than 2 events with, or without, their tokens")


# ---- explore (explore stage) ------------------------------------------------------------------------------
# EXPLORE COMMANDS: owned by the explore stage
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
    from neuronmap.explore.api import explore

    result = explore(run, figures=figures, out=out)
    s = result.summary
    con = _stdout()
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
    from neuronmap.explore.figures import FORMATS, write_figures

    formats = tuple(f.strip() for f in figure_format.split(",") if f.strip())
    if not formats or any(f not in FORMATS for f in formats):
        raise NeuronmapError(f"--format takes {', '.join(FORMATS)} (comma-separated), got {figure_format!r}")
    con = _stdout()
    for path in write_figures(run, out, formats):
        con.print(f"figure: {path}")


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
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Group again even if done with these options.")
    ] = False,
) -> None:
    """Add context groups to a traced run: part of speech (spaCy) and/or word sense of each target."""
    from neuronmap.contexts.grouping import SenseParams, group_run

    if threads is not None:
        import torch

        if threads < 1:
            raise NeuronmapError("--threads must be at least 1")
        torch.set_num_threads(threads)
    params = SenseParams(layer, min_contexts, max_senses, min_silhouette, batch_size, seed)
    record = group_run(run, by, model=model, sense=params, force=force)
    con = _stdout()
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


# ---- neuron dashboards (neurons stage) ------------------------------------------------------------------
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
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace dashboards made with other options.")
    ] = False,
) -> None:
    """Neuron dashboards of a mapped run: output-token weights, top-activating examples, activation histograms."""
    from neuronmap.neurons import neurons_run

    if threads is not None:
        import torch

        if threads < 1:
            raise NeuronmapError("--threads must be at least 1")
        torch.set_num_threads(threads)
    result = neurons_run(run, model=model, device=device, force=force, progress=True, top_tokens=top_tokens,
                         examples=examples, before=before, after=after, max_texts=max_texts,
                         batch_size=batch_size)  # fmt: skip
    s = result.summary
    con = _stdout()
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


# ---- edit wing -------------------------------------------------------------------------------------------
# EDIT COMMANDS: owned by the edit wing
def _edit_model(model: str, device: str | None, dtype: str | None, threads: int | None):  # type: ignore[no-untyped-def]
    import torch

    from neuronmap.models.loader import load_model

    if threads is not None:
        if threads < 1:
            raise NeuronmapError("--threads must be at least 1")
        torch.set_num_threads(threads)
    return load_model(model, device=device, dtype=dtype)


def _str_list(value: str, option: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise NeuronmapError(f"{option} is empty")
    return items


@app.command("causal-trace")
def causal_trace_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the tables and figures.")],
    model: Annotated[
        str, typer.Option(help="Embedded name, tiny-*, local folder or hub id.")
    ] = "smollm2-135m",
    prompt: Annotated[
        str | None,
        typer.Option(help="One prompt with {} for the subject, e.g. '{} is located in the city of'."),
    ] = None,
    subject: Annotated[
        str | None, typer.Option(help="The subject that fills {} (its tokens get the noise).")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="The target to trace; default the model's own top prediction.")
    ] = None,
    facts: Annotated[
        str | None,
        typer.Option(
            help="Trace a set: builtin:facts, builtin:counterfact-lite, CounterFact .json, or a context file."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Trace only the first N facts of --facts.")] = None,
    kind: Annotated[
        str, typer.Option(help="States to restore: hidden, mlp, attn (comma-separated).")
    ] = "hidden,mlp,attn",
    layers: Annotated[
        str | None, typer.Option(help="Layers to restore at, comma-separated (default all).")
    ] = None,
    window: Annotated[
        int, typer.Option(help="mlp/attn: restore this many consecutive layers around each layer.")
    ] = 10,
    samples: Annotated[int, typer.Option(help="Noise draws per fact.")] = 10,
    noise: Annotated[
        float,
        typer.Option(help="Noise std as a multiple of the std of subject embeddings over --noise-facts."),
    ] = 3.0,
    noise_facts: Annotated[
        str | None,
        typer.Option(help="Facts whose subjects set the noise scale (default --facts, else builtin:facts)."),
    ] = None,
    keep: Annotated[
        str,
        typer.Option(help="known (the model predicts the target) | all | auto (known for built-in sets)."),
    ] = "auto",
    figure_format: Annotated[
        str, typer.Option("--format", help="Figures: png,svg | png | svg | none.")
    ] = "png,svg",
    document_start: Annotated[
        bool | None,
        typer.Option(
            "--document-start/--no-document-start",
            help="Open prompts with the document separator (default: the model's ROME hparams).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 | bfloat16 | float16 | float64.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    max_memory: _MAX_MEMORY = None,
) -> None:
    """Causal tracing: noise the subject, restore one state at a time, and see where the fact comes back."""
    from neuronmap.edit.api import run_causal_trace
    from neuronmap.models.memory import memory_budget

    memory_budget(max_memory)  # a malformed size is refused before the model loads
    lm = _edit_model(model, device, dtype, threads)
    formats = [] if figure_format.strip() == "none" else _str_list(figure_format, "--format")
    s = run_causal_trace(
        out,
        lm,
        prompt=prompt,
        subject=subject,
        target=target,
        facts=facts,
        limit=limit,
        kinds=_str_list(kind, "--kind"),
        layers=_int_list(layers, "--layers"),
        window=window,
        samples=samples,
        noise=noise,
        noise_facts=noise_facts,
        seed=seed,
        keep=keep,
        formats=formats,
        document_start=document_start,
        max_memory=max_memory,
    )
    con = _stdout()
    con.print(
        f"[bold]{out}[/]: {s['facts']} fact(s) traced ({s['facts_dropped']} dropped), "
        f"p clean {s['p_clean_mean']:.3f}, corrupted {s['p_corrupted_mean']:.3f}, {s['seconds']} s"
    )
    from neuronmap.trace.targets import target_line

    t = s["targets"]
    if prompt is not None and t["not_top1"]:
        con.print(
            f"warning: the model does not predict {target!r} top-1 here (p clean {t['median_p']:.3g}): the trace "
            "shows where a prediction the model does not make comes back (leave out --target to trace its own)",
            markup=False,
            highlight=False,
        )
    elif prompt is None:
        con.print(target_line(t, "facts"), markup=False, highlight=False)
    for k, peak in s["peaks"].items():
        where = peak.get("position_class") or f"position {peak['position']} {peak['token']!r}"
        con.print(
            f"  {k}: strongest at layer {peak['layer']}, {where} (indirect effect {peak['indirect']:+.3f})"
        )
    for path in s["figures"]:
        con.print(f"  figure: {path}")


@app.command("stats")
def stats_cmd(
    model: Annotated[
        str, typer.Option(help="Embedded name, tiny-*, local folder or hub id.")
    ] = "smollm2-135m",
    layer: Annotated[
        str | None,
        typer.Option("--layer", help="Layer(s), comma-separated; default the ROME hparams' layer."),
    ] = None,
    corpus: Annotated[
        str | None, typer.Option(help="builtin:wiki, a .txt (one text a line) or .jsonl (field text) file.")
    ] = None,
    tokens: Annotated[
        int | None, typer.Option(help="Tokens to average over (default from the hparams).")
    ] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Tokens kept per text.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per forward pass.")] = 8,
    hparams: Annotated[
        str | None, typer.Option(help="ROME hparams name or .json (default: the model's).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Order of the built-in corpus.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 | bfloat16 | float16 | float64.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
) -> None:
    """Second-moment statistics E[k k^T] of a layer's neurons over a corpus (cached; ROME's C)."""
    from neuronmap.edit.hparams import load_hparams
    from neuronmap.edit.stats import second_moments

    lm = _edit_model(model, device, dtype, threads)
    hp = load_hparams(hparams, model=lm.spec)
    layers = _int_list(layer, "--layer") or [hp.resolve_layer(lm.n_layers)]
    found = second_moments(
        lm,
        layers,
        corpus=corpus or hp.mom2_corpus,
        n_tokens=tokens or hp.mom2_n_tokens,
        max_length=max_length or hp.mom2_max_length,
        batch_size=batch_size,
        seed=seed,
    )
    con = _stdout()
    for lay, st in found.items():
        how = "cached" if st.cached else f"computed in {st.seconds:.1f} s"
        con.print(
            f"layer {lay}: {st.n_tokens:,} tokens from {st.n_texts:,} texts of {st.corpus} ({how}) -> {st.path}"
        )


@app.command("edit")
def edit_cmd(
    subject: Annotated[str, typer.Option(help="The subject, e.g. 'Eiffel Tower'.")],
    prompt: Annotated[
        str, typer.Option(help="The prompt with {} for the subject, e.g. '{} is located in the city of'.")
    ],
    target_new: Annotated[str, typer.Option("--target-new", help="The new object, e.g. 'Rome'.")],
    target_true: Annotated[
        str | None, typer.Option("--target-true", help="The current object, to report its probability.")
    ] = None,
    model: Annotated[
        str, typer.Option(help="Embedded name, tiny-*, local folder or hub id.")
    ] = "smollm2-135m",
    layer: Annotated[int | None, typer.Option(help="Layer to edit (default from the hparams).")] = None,
    hparams: Annotated[
        str | None, typer.Option(help="ROME hparams name or .json (default: the model's).")
    ] = None,
    apply: Annotated[
        list[Path] | None,
        typer.Option("--apply", help="Saved edits to apply first, in order (sequential edits)."),
    ] = None,
    check: Annotated[
        list[str] | None,
        typer.Option("--check", help="Another full prompt to report before/after (repeatable)."),
    ] = None,
    save: Annotated[Path | None, typer.Option(help="Where to write the edit (see --save-as).")] = None,
    save_as: Annotated[
        str, typer.Option("--save-as", help="delta (a .safetensors file) | model (a Hugging Face folder).")
    ] = "delta",
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 | bfloat16 | float16 | float64.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
) -> None:
    """Rewrite one fact with ROME (rank-one edit of one MLP output projection)."""
    from neuronmap.edit.algorithm.edit import Edit, rome, save_model
    from neuronmap.edit.algorithm.request import Request
    from neuronmap.edit.hparams import load_hparams
    from neuronmap.edit.prompts import opening_ids
    from neuronmap.edit.scoring import mean_logprobs
    from neuronmap.edit.window import check_prompts, check_request

    if save_as not in ("delta", "model"):
        raise NeuronmapError(f"--save-as takes delta or model, got {save_as!r}")
    request = Request(prompt, subject, target_new, target_true).validate()
    lm = _edit_model(model, device, dtype, threads)
    hp = load_hparams(hparams, model=lm.spec)
    check_request(lm, hp, request, "--prompt")
    check_prompts(
        lm, hp, check or [], [target_new, target_true or ""], "--check", "the prompt with its target"
    )
    opening = opening_ids(lm.tokenizer, hp.document_start)
    prior = [Edit.load(path, lm) for path in apply or []]
    for e in prior:
        e.apply()
    prompts = [request.text, *(check or [])]
    targets = [t for t in (target_new, target_true) if t]

    def probs() -> list[list[float]]:
        return [
            mean_logprobs(lm, prompts, [t] * len(prompts), opening=opening).exp().tolist() for t in targets
        ]

    before = probs()
    edit = rome(lm, request, hp, layer=layer, progress=True).apply()
    after = probs()
    con = _stdout()
    con.print(
        f"[bold]edited layer {edit.layer}[/] ({edit.module_name}): {edit.info['steps']} steps, "
        f"|delta| {edit.info['delta_norm']:.2f}, {edit.info['seconds']} s"
    )
    for i, text in enumerate(prompts):
        cells = ", ".join(f"p({t!r}) {before[j][i]:.3f} -> {after[j][i]:.3f}" for j, t in enumerate(targets))
        con.print(f"  {text!r}: {cells}")
    if save is not None:
        if save_as == "delta":
            con.print(f"edit saved to {edit.save(save)}")
        else:
            con.print(f"edited model saved to {save_model(lm, save, [*prior, edit])}")


@app.command("edit-eval")
def edit_eval_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.parquet and summary.json.")],
    facts: Annotated[
        str, typer.Option(help="builtin:counterfact-lite or a CounterFact .json file.")
    ] = "builtin:counterfact-lite",
    model: Annotated[
        str, typer.Option(help="Embedded name, tiny-*, local folder or hub id.")
    ] = "smollm2-135m",
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N records (after --offset).")] = None,
    offset: Annotated[int, typer.Option(help="Skip the first N records (a held-out slice for a sweep).")] = 0,
    layers: Annotated[
        str | None,
        typer.Option("--layer", "--layers", help="Layer, or several for a sweep (comma-separated)."),
    ] = None,
    hparams: Annotated[
        str | None, typer.Option(help="ROME hparams name or .json (default: the model's).")
    ] = None,
    fluency: Annotated[
        bool, typer.Option("--fluency/--no-fluency", help="Sample generations for fluency.")
    ] = True,
    gen_length: Annotated[
        int,
        typer.Option(
            "--gen-length", help="Tokens per fluency generation in all, the prompt's counted (ROME: 100)."
        ),
    ] = 100,
    seed: Annotated[int, typer.Option(help="Seed of the generations.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 | bfloat16 | float16 | float64.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
    max_memory: _MAX_MEMORY = None,
) -> None:
    """CounterFact-style evaluation of ROME: efficacy, paraphrase, neighbourhood, score, fluency."""
    from rich.table import Table

    from neuronmap.edit.api import run_eval
    from neuronmap.models.memory import memory_budget

    memory_budget(max_memory)  # a malformed size is refused before the model loads
    lm = _edit_model(model, device, dtype, threads)
    s = run_eval(
        out,
        lm,
        facts=facts,
        limit=limit,
        offset=offset,
        hparams=hparams,
        layers=_int_list(layers, "--layers"),
        with_fluency=fluency,
        gen_length=gen_length,
        seed=seed,
        max_memory=max_memory,
    )
    table = Table(
        "layer", "efficacy", "paraphrase", "neighborhood", "score", "fluency", title=f"{s['records']} records"
    )
    for lay, m in s["by_layer"].items():
        cells = [
            f"{m[k]['edited'] * (1 if k == 'fluency' else 100):.1f} ({m[k]['unedited'] * (1 if k == 'fluency' else 100):.1f})"
            for k in ("efficacy", "paraphrase", "neighborhood", "score", "fluency")
        ]
        table.add_row(lay, *cells)
    con = _stdout()
    con.print(table)
    con.print(
        f"edited (unedited) model; percentages except fluency (n-gram entropy, bits). {out}, {s['seconds']} s"
    )


# ---- study -----------------------------------------------------------------------------------------------
# STUDY COMMANDS: owned by the study
study_app = typer.Typer(help="Studies across facts: which facts are easy to edit.", no_args_is_help=True)
app.add_typer(study_app, name="study")


@study_app.command("editability")
def study_editability_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the tables, figures and report.")],
    model: Annotated[
        str, typer.Option(help="Embedded name, tiny-*, local folder or hub id.")
    ] = "smollm2-135m",
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
    hparams: Annotated[
        str | None, typer.Option(help="ROME hparams name or .json (default: the model's).")
    ] = None,
    keep: Annotated[
        str,
        typer.Option(
            help="known (the model predicts the true target) | rank (true above the new target) | all."
        ),
    ] = "known",
    min_p: Annotated[float, typer.Option(help="--keep rank: the least P(true) of an included fact.")] = 0.02,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals.")] = 2000,
    figure_format: Annotated[
        str, typer.Option("--format", help="Figures: png,svg | png | svg | none.")
    ] = "png,svg",
    seed: Annotated[int, typer.Option(help="Seed of the false targets, the noise and the bootstrap.")] = 0,
    device: Annotated[str | None, typer.Option(help="cpu | cuda | auto.")] = None,
    dtype: Annotated[str | None, typer.Option(help="float32 | bfloat16 | float16 | float64.")] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads.")] = None,
) -> None:
    """Which facts are easy to edit: representation shape (causal and neuron traces) against ROME editability."""
    from neuronmap.study.api import study_editability

    formats = [] if figure_format.strip() == "none" else _str_list(figure_format, "--format")
    sweep = _int_list(layers, "--layers")
    lm = _edit_model(model, device, dtype, threads)
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
        formats=formats,
    )
    con = _stdout()
    con.print(
        f"[bold]{out}[/]: {s['studied']} of {s['facts']} facts studied ({s['unknown']} not known), {s['seconds']} s"
    )
    for line in s["conclusion"]:
        con.print(f"- {line}", markup=False, highlight=False)
    con.print(f"report: {s['report'][0]}, {s['report'][1]}")


# ---- outliers wing ---------------------------------------------------------------------------------------
# OUTLIERS COMMANDS: owned by the outliers wing
outliers_app = typer.Typer(
    help="Virtual outlier synthesis for text classifiers: train, synthesize, refine, evaluate.",
    no_args_is_help=True,
)
app.add_typer(outliers_app, name="outliers")

_ODATA = Annotated[
    str, typer.Option("--data", help="builtin:wiki-topics, builtin:sentiment, or a .csv/.tsv/.jsonl file.")
]
_OENCODER = Annotated[
    str,
    typer.Option("--encoder", help="Frozen encoder: minilm-l6, smollm2-135m, tiny-bert, a folder or hub id."),
]
_OTEXT_COL = Annotated[str, typer.Option("--text-column", help="Column (field) holding the text.")]
_OLABEL_COL = Annotated[str, typer.Option("--label-column", help="Column (field) holding the label.")]
_OLIMIT = Annotated[int | None, typer.Option("--limit", help="Use a seeded random sample of N texts.")]
_OHOLDOUT = Annotated[
    list[str] | None,
    typer.Option(
        "--holdout", help="Labels kept out of training as near-OOD data (comma-separated or repeated)."
    ),
]
_ODATA_SEED = Annotated[int, typer.Option("--data-seed", help="Seed of the --limit sample and the split.")]
_OMAX_LEN = Annotated[
    int, typer.Option("--max-length", help="Encoder tokens per text (longer are truncated).")
]
_ODEVICE = Annotated[str | None, typer.Option("--device", help="Encoder device: cpu | cuda | auto.")]
_ODTYPE = Annotated[
    str | None, typer.Option("--dtype", help="Encoder dtype: float32 | bfloat16 | float16 | float64.")
]
_OTHREADS = Annotated[int | None, typer.Option("--threads", help="torch CPU threads.")]
_OHIDDEN = Annotated[int, typer.Option("--hidden", help="Width of the penultimate layer.")]
_OEPOCHS = Annotated[int, typer.Option("--epochs", help="Training epochs of the head.")]
_OBATCH = Annotated[int, typer.Option("--batch-size", help="Training batch size.")]
_OLR = Annotated[float, typer.Option("--lr", help="AdamW learning rate.")]
_OWD = Annotated[float, typer.Option("--weight-decay", help="AdamW weight decay.")]
_ODROPOUT = Annotated[float, typer.Option("--dropout", help="Dropout on the embeddings.")]
_OQUEUE = Annotated[int, typer.Option("--queue", help="VOS: penultimate features kept per class.")]
_OSAMPLE_FROM = Annotated[
    int, typer.Option("--sample-from", help="VOS: candidates drawn per class and step.")
]
_OSELECT = Annotated[int, typer.Option("--select", help="VOS: lowest-likelihood candidates kept per class.")]
_OLOSS_W = Annotated[float, typer.Option("--loss-weight", help="VOS: weight of the energy uncertainty loss.")]
_OSTART = Annotated[int, typer.Option("--start-epoch", help="VOS: first epoch with virtual outliers.")]
_OGEN = Annotated[
    str, typer.Option("--generative", help="shared (Gaussians, shared covariance; VOS) | class | gmm.")
]
_OCOMP = Annotated[int, typer.Option("--components", help="gmm: mixture components per class.")]
_OSIGN = Annotated[
    str,
    typer.Option(
        "--logistic-sign",
        help="VOS: weight of the uncertainty logistic: positive (softplus) | free (the paper's, either sign).",
    ),
]
_OSEEDS = Annotated[str, typer.Option("--seeds", help="Comma-separated training seeds.")]


def _holdout_list(values: list[str] | None) -> list[str]:
    return [part.strip() for value in values or [] for part in value.split(",") if part.strip()]


def _float_list(value: str | None, option: str) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise NeuronmapError(
            f"{option} takes comma-separated numbers, e.g. 0.5,0.1 (got {value!r})"
        ) from None


def _outlier_configs(threads: int | None, data: dict, train: dict) -> tuple:
    from neuronmap.outliers.train import DataConfig
    from neuronmap.outliers.vos import TrainConfig

    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    data["holdout"] = _holdout_list(data.get("holdout"))
    return DataConfig(**data), TrainConfig(**train)


def _pct(value: float) -> str:
    return f"{100 * value:.1f}"


@outliers_app.command("train")
def outliers_train_cmd(
    data: _ODATA,
    out: Annotated[Path, typer.Option("--out", "-o", help="Classifier folder to write.")],
    encoder: _OENCODER = "minilm-l6",
    text_column: _OTEXT_COL = "text",
    label_column: _OLABEL_COL = "label",
    limit: _OLIMIT = None,
    holdout: _OHOLDOUT = None,
    data_seed: _ODATA_SEED = 0,
    max_length: _OMAX_LEN = 128,
    hidden: _OHIDDEN = 128,
    epochs: _OEPOCHS = 30,
    batch_size: _OBATCH = 128,
    lr: _OLR = 1e-3,
    weight_decay: _OWD = 1e-4,
    dropout: _ODROPOUT = 0.1,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the weights, batches and virtual outliers.")
    ] = 0,
    vos: Annotated[
        bool, typer.Option("--vos/--no-vos", help="Train with virtual outlier synthesis.")
    ] = False,
    queue: _OQUEUE = 1000,
    sample_from: _OSAMPLE_FROM = 10_000,
    select: _OSELECT = 1,
    loss_weight: _OLOSS_W = 0.1,
    start_epoch: _OSTART = 10,
    generative: _OGEN = "shared",
    components: _OCOMP = 3,
    logistic_sign: _OSIGN = "positive",
    device: _ODEVICE = None,
    dtype: _ODTYPE = None,
    threads: _OTHREADS = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a classifier already in --out.")] = False,
) -> None:
    """Train an MLP head on a frozen encoder's embeddings (split 70/15/15 per class), optionally with VOS."""
    from neuronmap.outliers.train import train_classifier

    data_config, train_config = _outlier_configs(
        threads,
        {"data": data, "encoder": encoder, "text_column": text_column, "label_column": label_column,
         "limit": limit, "holdout": holdout, "data_seed": data_seed, "max_length": max_length,
         "device": device, "dtype": dtype},
        {"hidden": hidden, "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
         "dropout": dropout, "seed": seed, "vos": vos, "queue": queue, "sample_from": sample_from,
         "select": select, "loss_weight": loss_weight, "start_epoch": start_epoch, "generative": generative,
         "components": components, "logistic_sign": logistic_sign},
    )  # fmt: skip
    s = train_classifier(data_config, train_config, out, force=force).summary
    show = _stdout()
    split = s["split"]
    show.print(
        f"[bold]{out}[/]: {len(s['classes'])} classes, {s['encoder']} embeddings ({s['dim']}-d); "
        f"train {split['train']}, val {split['val']}, test {split['test']}, held out {split['holdout']}; "
        f"{'with' if s['vos'] else 'without'} VOS, {s['seconds']} s"
    )
    show.print(f"accuracy: val {_pct(s['val_accuracy'])}%, test {_pct(s['test_accuracy'])}%")
    for name, scores in s["ood"].items():
        cells = ", ".join(
            f"{score} AUROC {_pct(m['auroc'])}% FPR95 {_pct(m['fpr95'])}%" for score, m in scores.items()
        )
        show.print(f"{name} OOD (test vs held-out labels): {cells}")


@outliers_app.command("synthesize")
def outliers_synthesize_cmd(
    model: Annotated[Path, typer.Option("--model", help="Classifier folder from `outliers train`.")],
    label: Annotated[str, typer.Option("--class", help="The class to synthesise.")],
    quantiles: Annotated[
        str, typer.Option("--quantiles", help="Likelihood tails, comma-separated ('' for none).")
    ] = "0.5,0.1,0.01,0.001",
    radii: Annotated[str | None, typer.Option("--radii", help="Mahalanobis radii, comma-separated.")] = None,
    n: Annotated[int, typer.Option("--n", help="Points per quantile or radius.")] = 20,
    boundary: Annotated[
        int | None, typer.Option("--boundary", help="Points on the decision boundary (default --n; 0: none).")
    ] = None,
    generative: _OGEN = "shared",
    components: _OCOMP = 3,
    pool: Annotated[
        str | None,
        typer.Option("--pool", help="Texts to search (.csv/.tsv/.jsonl); default the training split."),
    ] = None,
    pool_text_column: Annotated[
        str, typer.Option("--pool-text-column", help="Text column of --pool.")
    ] = "text",
    neighbours: Annotated[int, typer.Option("--neighbours", help="Nearest real texts per point.")] = 5,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampling.")] = 0,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output folder (default MODEL/synthesis/CLASS).")
    ] = None,
    figure: Annotated[bool, typer.Option("--figure/--no-figure", help="Write synthesis.png.")] = True,
    threads: _OTHREADS = None,
) -> None:
    """Sample class activations at controlled dissimilarity; list the nearest real texts; plot p and energy."""
    from rich.table import Table

    from neuronmap.outliers.synthesis import synthesize

    if threads is not None:
        import torch

        torch.set_num_threads(max(1, threads))
    result = synthesize(
        model,
        label,
        quantiles=_float_list(quantiles, "--quantiles") or [],
        radii=_float_list(radii, "--radii"),
        n=n,
        boundary=boundary,
        generative=generative,
        components=components,
        pool=pool,
        pool_text_column=pool_text_column,
        neighbours=neighbours,
        seed=seed,
        out=out,
        figure=figure,
    )
    table = Table("mode", "level", "points", "Mahalanobis", "log-lik", f"p({label})", "energy", "still class",
                  title=f"synthetic '{label}' activations")  # fmt: skip
    for row in result.summary["levels"]:
        table.add_row(
            row["mode"],
            "-" if row["level"] is None else f"{row['level']:g}",
            str(row["points"]),
            f"{row['mahalanobis']:.2f}",
            f"{row['log_likelihood']:.1f}",
            f"{row['p_class']:.3f}",
            f"{row['energy']:.3f}",
            f"{_pct(row['still_class'])}%",
        )
    show = _stdout()
    show.print(table)
    for note in result.summary["notes"]:
        show.print(f"note: {note}")
    show.print(
        f"[bold]{result.out}[/]: synthetic.parquet, nearest.jsonl{', synthesis.png' if figure else ''}"
    )


@outliers_app.command("refine")
def outliers_refine_cmd(
    data: _ODATA,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for refine.json and picked.jsonl.")],
    encoder: _OENCODER = "minilm-l6",
    text_column: _OTEXT_COL = "text",
    label_column: _OLABEL_COL = "label",
    limit: _OLIMIT = None,
    holdout: _OHOLDOUT = None,
    data_seed: _ODATA_SEED = 0,
    max_length: _OMAX_LEN = 128,
    initial: Annotated[int, typer.Option("--initial", help="Labelled training texts to start from.")] = 300,
    budget: Annotated[int, typer.Option("--budget", help="Texts labelled per round and strategy.")] = 100,
    rounds: Annotated[int, typer.Option("--rounds", help="Labelling rounds.")] = 1,
    hard_fraction: Annotated[
        float,
        typer.Option("--hard-fraction", help="Share of test texts, lowest margin first, scored as hard."),
    ] = 0.2,
    strategies: Annotated[
        str, typer.Option("--strategies", help="boundary,random,uncertainty (any subset).")
    ] = "boundary,random,uncertainty",
    space: Annotated[
        str,
        typer.Option(
            "--space",
            help="boundary: where the nearest text to a boundary point is measured: feature | logit | whitened.",
        ),
    ] = "feature",
    seeds: _OSEEDS = "0,1,2",
    hidden: _OHIDDEN = 128,
    epochs: _OEPOCHS = 30,
    batch_size: _OBATCH = 128,
    lr: _OLR = 1e-3,
    weight_decay: _OWD = 1e-4,
    dropout: _ODROPOUT = 0.1,
    generative: _OGEN = "shared",
    components: _OCOMP = 3,
    device: _ODEVICE = None,
    dtype: _ODTYPE = None,
    threads: _OTHREADS = None,
) -> None:
    """Label pool texts nearest to synthesised boundary points vs random vs least-confident; retrain; compare."""
    from rich.table import Table

    from neuronmap.outliers.refinement import RefineConfig, refine

    data_config, train_config = _outlier_configs(
        threads,
        {"data": data, "encoder": encoder, "text_column": text_column, "label_column": label_column,
         "limit": limit, "holdout": holdout, "data_seed": data_seed, "max_length": max_length,
         "device": device, "dtype": dtype},
        {"hidden": hidden, "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
         "dropout": dropout},
    )  # fmt: skip
    config = RefineConfig(
        initial=initial,
        budget=budget,
        rounds=rounds,
        hard_fraction=hard_fraction,
        strategies=tuple(s.strip() for s in strategies.split(",") if s.strip()),
        generative=generative,
        components=components,
        space=space,
    )
    result = refine(data_config, train_config, config, _int_list(seeds, "--seeds") or [], out)
    agg = result["aggregate"]
    table = Table("strategy", "round", "labelled", "accuracy %", "hard accuracy %",
                  title=f"refinement over {len(result['seeds'])} seeds (mean ± std)")  # fmt: skip

    def cell(stat: dict) -> str:
        return f"{_pct(stat['mean'])} ± {_pct(stat['std'])}"

    table.add_row(
        "initial", "0", str(initial), cell(agg["initial"]["accuracy"]), cell(agg["initial"]["hard_accuracy"])
    )
    for strategy in config.strategies:
        for r, stats in enumerate(agg[strategy], start=1):
            table.add_row(strategy, str(r), str(initial + r * budget), cell(stats["accuracy"]),
                          cell(stats["hard_accuracy"]))  # fmt: skip
    show = _stdout()
    show.print(table)
    show.print(f"[bold]{out}[/]: refine.json, picked.jsonl ({result['seconds']} s)")


@outliers_app.command("evaluate")
def outliers_evaluate_cmd(
    data: _ODATA,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for metrics.json and metrics.md.")],
    encoder: _OENCODER = "minilm-l6",
    text_column: _OTEXT_COL = "text",
    label_column: _OLABEL_COL = "label",
    limit: _OLIMIT = None,
    holdout: _OHOLDOUT = None,
    data_seed: _ODATA_SEED = 0,
    max_length: _OMAX_LEN = 128,
    far: Annotated[
        str, typer.Option("--far", help="Far-OOD texts: auto (the other built-in set) | none | SRC.")
    ] = "auto",
    far_limit: Annotated[int, typer.Option("--far-limit", help="Far-OOD texts sampled.")] = 1000,
    seeds: _OSEEDS = "0,1,2",
    hidden: _OHIDDEN = 128,
    epochs: _OEPOCHS = 30,
    batch_size: _OBATCH = 128,
    lr: _OLR = 1e-3,
    weight_decay: _OWD = 1e-4,
    dropout: _ODROPOUT = 0.1,
    queue: _OQUEUE = 1000,
    sample_from: _OSAMPLE_FROM = 10_000,
    select: _OSELECT = 1,
    loss_weight: _OLOSS_W = 0.1,
    start_epoch: _OSTART = 10,
    generative: _OGEN = "shared",
    components: _OCOMP = 3,
    logistic_sign: _OSIGN = "positive",
    device: _ODEVICE = None,
    dtype: _ODTYPE = None,
    threads: _OTHREADS = None,
) -> None:
    """Accuracy and OOD detection (AUROC, FPR95; energy and MSP) with and without VOS, over seeds."""
    from neuronmap.outliers.evaluation import evaluate

    data_config, train_config = _outlier_configs(
        threads,
        {"data": data, "encoder": encoder, "text_column": text_column, "label_column": label_column,
         "limit": limit, "holdout": holdout, "data_seed": data_seed, "max_length": max_length,
         "device": device, "dtype": dtype},
        {"hidden": hidden, "epochs": epochs, "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
         "dropout": dropout, "queue": queue, "sample_from": sample_from, "select": select,
         "loss_weight": loss_weight, "start_epoch": start_epoch, "generative": generative,
         "components": components, "logistic_sign": logistic_sign},
    )  # fmt: skip
    result = evaluate(
        data_config, train_config, _int_list(seeds, "--seeds") or [], out, far=far, far_limit=far_limit
    )
    from neuronmap.outliers.evaluation import markdown_table

    show = _stdout()
    show.print(markdown_table(result), markup=False, highlight=False)
    show.print(f"[bold]{out}[/]: metrics.json, metrics.md ({result['seconds']} s)")


def main() -> None:
    quiet_libraries()  # before any command imports torch, transformers or Ray
    try:
        app(standalone_mode=False, prog_name="neuronmap")
    except NeuronmapError as exc:
        _error_line(str(exc))
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        console.print("[bold red]interrupted[/]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click usage errors (typer vendors its own click) carry their own exit code
        if not any(cls.__name__ == "ClickException" for cls in type(exc).__mro__):
            raise
        ctx = getattr(exc, "ctx", None)
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        _error_line(f"{exc.format_message()}{where}")
        sys.exit(exc.exit_code or 2)


def _error_line(message: str) -> None:
    """One line on stderr: user text in the message is neither markup nor a line break."""
    from rich.markup import escape

    text = " ".join(message.split("\n"))
    console.print(f"[bold red]error:[/] {escape(text)}", highlight=False, soft_wrap=True)
