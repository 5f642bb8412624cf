"""``neuronmap trace`` (and its ``--group-by``, the group stage composed after it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from neuronmap.cli.common import app, console, int_list, stdout
from neuronmap.cli.options import Address, Device, Dtype, MaxMemory, Model, Threads, Truncate

if TYPE_CHECKING:
    from neuronmap.trace.runner import TraceResult


@app.command("trace")
def trace_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run directory to write.")],
    model: Model = "smollm2-135m",
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
    device: Device = None,
    dtype: Dtype = None,
    threads: Threads = None,
    part_size: Annotated[
        int, typer.Option("--part-size", help="Contexts per part (the unit of resumption and of Ray work).")
    ] = 256,
    backend: Annotated[str, typer.Option(help="local | ray (parts scored by Ray actors).")] = "local",
    address: Address = None,
    workers: Annotated[int, typer.Option(help="Ray actors, each loading the model once.")] = 2,
    gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker", help="GPUs per Ray actor.")] = 0.0,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing trace in --out.")] = False,
    truncate: Truncate = None,
    max_memory: MaxMemory = None,
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
    from dataclasses import fields, replace

    # torch-free: the mistakes below are found before torch loads
    from neuronmap.trace.config import TraceConfig

    given = dict(locals())
    given["top_k"] = top_k if top_k is not None else (32 if each_token else 100)
    given["layers"] = int_list(layers, "--layers")
    config = TraceConfig(**{f.name: given[f.name] for f in fields(TraceConfig)})
    config.validate()
    context_set = config.load_contexts()

    from neuronmap.trace.runner import trace_run  # torch, transformers: only now

    result = trace_run(replace(config, group_by=None), out, force=force, context_set=context_set)
    if group_by:  # the group stage, composed here (trace_run(group_by=...) does the same for the Python API)
        from neuronmap.contexts.grouping import group_run

        group_run(result.run, group_by)
    _print_trace(result, out, each_token, group_by)


def _print_trace(result: TraceResult, out: Path, each_token: bool, group_by: str | None) -> None:
    s = result.summary
    if result.skipped:
        console.print(f"{out}: trace already complete (use --force to redo it)")
    out_console = stdout()
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
