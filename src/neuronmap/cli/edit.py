"""The edit wing: ``causal-trace``, ``stats``, ``edit`` and ``edit-eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from neuronmap.cli.common import app, formats, int_list, stdout, str_list
from neuronmap.cli.options import (
    Device,
    Dtype,
    FigureFormat,
    Hparams,
    MaxMemory,
    Model,
    Threads,
    check_model_options,
    load_model_checked,
)
from neuronmap.errors import NeuronmapError

Algorithm = Annotated[
    str,
    typer.Option(
        "--algorithm",
        help="rome (one fact into one layer) | memit (facts written together into a range of layers).",
    ),
]


@app.command("causal-trace")
def causal_trace_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the tables and figures.")],
    model: Model = "smollm2-135m",
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
    figure_format: FigureFormat = "png,svg",
    document_start: Annotated[
        bool | None,
        typer.Option(
            "--document-start/--no-document-start",
            help="Open prompts with the document separator (default: the model's ROME hparams).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the noise.")] = 0,
    device: Device = None,
    dtype: Dtype = None,
    threads: Threads = None,
    max_memory: MaxMemory = None,
) -> None:
    """Causal tracing: noise the subject, restore one state at a time, and see where the fact comes back."""
    from neuronmap.models.memory import memory_budget

    memory_budget(max_memory)  # a malformed size is refused before the model loads
    kinds, chosen, figures = str_list(kind, "--kind"), int_list(layers, "--layers"), formats(figure_format)
    lm = load_model_checked(model, device, dtype, threads)
    from neuronmap.edit.api import run_causal_trace

    s = run_causal_trace(
        out,
        lm,
        prompt=prompt,
        subject=subject,
        target=target,
        facts=facts,
        limit=limit,
        kinds=kinds,
        layers=chosen,
        window=window,
        samples=samples,
        noise=noise,
        noise_facts=noise_facts,
        seed=seed,
        keep=keep,
        formats=figures,
        document_start=document_start,
        max_memory=max_memory,
    )
    con = stdout()
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
    model: Model = "smollm2-135m",
    layer: Annotated[
        str | None,
        typer.Option("--layer", help="Layer(s), comma-separated; default the hparams' layer(s)."),
    ] = None,
    algorithm: Algorithm = "rome",
    corpus: Annotated[
        str | None, typer.Option(help="builtin:wiki, a .txt (one text a line) or .jsonl (field text) file.")
    ] = None,
    tokens: Annotated[
        int | None, typer.Option(help="Tokens to average over (default from the hparams).")
    ] = None,
    max_length: Annotated[int | None, typer.Option("--max-length", help="Tokens kept per text.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Texts per forward pass.")] = 8,
    hparams: Hparams = None,
    seed: Annotated[int, typer.Option(help="Order of the built-in corpus.")] = 0,
    device: Device = None,
    dtype: Dtype = None,
    threads: Threads = None,
) -> None:
    """Second-moment statistics E[k k^T] of a layer's neurons over a corpus (cached; ROME's and MEMIT's C)."""
    chosen = int_list(layer, "--layer")
    from neuronmap.edit.hparams import check_algorithm, load_edit_hparams

    check_algorithm(algorithm)
    lm = load_model_checked(model, device, dtype, threads)
    from neuronmap.edit.stats import second_moments

    hp = load_edit_hparams(algorithm, hparams, model=lm.spec)
    layers = chosen or hp.resolve_layers(lm.n_layers)
    found = second_moments(
        lm,
        layers,
        corpus=corpus or hp.mom2_corpus,
        n_tokens=tokens or hp.mom2_n_tokens,
        max_length=max_length or hp.mom2_max_length,
        batch_size=batch_size,
        seed=seed,
    )
    con = stdout()
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
    model: Model = "smollm2-135m",
    layer: Annotated[
        str | None,
        typer.Option(
            "--layer",
            "--layers",
            help="Layer to edit; MEMIT: its layers, comma-separated (default: the hparams').",
        ),
    ] = None,
    algorithm: Algorithm = "rome",
    hparams: Hparams = None,
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
    device: Device = None,
    dtype: Dtype = None,
    threads: Threads = None,
) -> None:
    """Rewrite one fact with ROME (rank-one edit of one MLP output projection) or MEMIT (a range of layers)."""
    from neuronmap.edit.hparams import edit_layers

    layers = edit_layers(algorithm, int_list(layer, "--layers"))
    if save_as not in ("delta", "model"):  # run_edit checks it too: here, before torch loads
        raise NeuronmapError(f"--save-as takes delta or model, got {save_as!r}")
    check_model_options(model, dtype, threads)
    from neuronmap.edit.algorithm.request import Request

    Request(prompt, subject, target_new, target_true).validate()
    lm = load_model_checked(model, device, dtype, threads)
    from neuronmap.edit.api import run_edit

    s = run_edit(lm, subject=subject, prompt=prompt, target_new=target_new, target_true=target_true, layers=layers,
                 hparams=hparams, apply=apply or [], check=check or [], save=save, save_as=save_as,
                 algorithm=algorithm)  # fmt: skip
    con = stdout()
    where = f"layer {s['layer']}[/] ({s['module']})"
    if algorithm == "memit":
        where = f"layers {', '.join(map(str, s['layers']))}[/] with MEMIT ({', '.join(s['modules'])})"
    found = " (the target found in the cache)" if s["cached"] else ""
    con.print(
        f"[bold]edited {where}: {s['steps']} steps{found}, |delta| {s['delta_norm']:.2f}, {s['seconds']} s"
    )
    before, after = s["before"], s["after"]
    for i, text in enumerate(s["prompts"]):
        cells = ", ".join(
            f"p({t!r}) {before[j][i]:.3f} -> {after[j][i]:.3f}" for j, t in enumerate(s["targets"])
        )
        con.print(f"  {text!r}: {cells}")
    if s["saved"] is not None:
        what = "edit" if save_as == "delta" else "edited model"
        con.print(f"{what} saved to {s['saved']}")


@app.command("edit-eval")
def edit_eval_cmd(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.parquet and summary.json.")],
    facts: Annotated[
        str, typer.Option(help="builtin:counterfact-lite or a CounterFact .json file.")
    ] = "builtin:counterfact-lite",
    model: Model = "smollm2-135m",
    limit: Annotated[int | None, typer.Option(help="Evaluate the first N records (after --offset).")] = None,
    offset: Annotated[int, typer.Option(help="Skip the first N records (a held-out slice for a sweep).")] = 0,
    layers: Annotated[
        str | None,
        typer.Option(
            "--layer",
            "--layers",
            help="ROME: a layer, or several for a sweep; MEMIT: the layers it edits (comma-separated).",
        ),
    ] = None,
    hparams: Hparams = None,
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
    algorithm: Algorithm = "rome",
    batch: Annotated[
        int,
        typer.Option(
            help="Records edited together, scored, then undone (MEMIT: one edit; ROME: one after another)."
        ),
    ] = 1,
    device: Device = None,
    dtype: Dtype = None,
    threads: Threads = None,
    max_memory: MaxMemory = None,
) -> None:
    """CounterFact-style evaluation of ROME or MEMIT: efficacy, paraphrase, neighbourhood, score, fluency."""
    from neuronmap.edit.hparams import check_algorithm, check_batch
    from neuronmap.models.memory import memory_budget

    check_algorithm(algorithm)
    check_batch(batch)
    memory_budget(max_memory)  # a malformed size is refused before the model loads
    chosen = int_list(layers, "--layers")
    lm = load_model_checked(model, device, dtype, threads)
    from rich.table import Table

    from neuronmap.edit.api import run_eval

    s = run_eval(
        out,
        lm,
        facts=facts,
        limit=limit,
        offset=offset,
        hparams=hparams,
        layers=chosen,
        with_fluency=fluency,
        gen_length=gen_length,
        seed=seed,
        max_memory=max_memory,
        algorithm=algorithm,
        batch=batch,
    )
    title = f"{s['records']} records" + (f", {batch} edited together" if batch > 1 else "")
    first = "layers" if algorithm == "memit" else "layer"
    table = Table(first, "efficacy", "paraphrase", "neighborhood", "score", "fluency", title=title)
    for lay, m in s["by_layer"].items():
        cells = [
            f"{m[k]['edited'] * (1 if k == 'fluency' else 100):.1f} ({m[k]['unedited'] * (1 if k == 'fluency' else 100):.1f})"
            for k in ("efficacy", "paraphrase", "neighborhood", "score", "fluency")
        ]
        table.add_row(lay, *cells)
    con = stdout()
    con.print(table)
    con.print(
        f"edited (unedited) model; percentages except fluency (n-gram entropy, bits). {out}, {s['seconds']} s"
    )
