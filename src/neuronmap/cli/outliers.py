"""``neuronmap outliers``: the outlier wing (train, synthesize, refine, evaluate)."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Annotated, Any

import typer

from neuronmap.cli.common import app, float_list, int_list, stdout
from neuronmap.cli.options import Threads, check_threads, set_threads

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


def _outlier_configs(options: dict[str, Any], skip: tuple[str, ...] = ()) -> tuple:
    """The wing's data and training configs from a command's options (its ``locals()``), matched by field name:
    one list of fields, the configs' own, instead of one per command. ``skip``: options meant for another config."""
    check_threads(options["threads"])
    from neuronmap.outliers.train import DataConfig
    from neuronmap.outliers.vos import TrainConfig

    set_threads(options["threads"])

    def pick(config: type) -> dict[str, Any]:
        return {f.name: options[f.name] for f in fields(config) if f.name in options and f.name not in skip}

    data = pick(DataConfig)
    data["holdout"] = _holdout_list(data.get("holdout"))
    return DataConfig(**data), TrainConfig(**pick(TrainConfig))


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
    threads: Threads = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a classifier already in --out.")] = False,
) -> None:
    """Train an MLP head on a frozen encoder's embeddings (split 70/15/15 per class), optionally with VOS."""
    check_threads(threads)  # before the wing's libraries load
    from neuronmap.outliers.train import train_classifier

    data_config, train_config = _outlier_configs(locals())
    s = train_classifier(data_config, train_config, out, force=force).summary
    show = stdout()
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
    threads: Threads = None,
) -> None:
    """Sample class activations at controlled dissimilarity; list the nearest real texts; plot p and energy."""
    check_threads(threads)
    from rich.table import Table

    from neuronmap.outliers.synthesis import synthesize

    set_threads(threads)
    result = synthesize(
        model,
        label,
        quantiles=float_list(quantiles, "--quantiles") or [],
        radii=float_list(radii, "--radii"),
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
    show = stdout()
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
    threads: Threads = None,
) -> None:
    """Label pool texts nearest to synthesised boundary points vs random vs least-confident; retrain; compare."""
    check_threads(threads)  # before the wing's libraries load
    from rich.table import Table

    from neuronmap.outliers.refinement import RefineConfig, refine

    data_config, train_config = _outlier_configs(locals(), skip=("generative", "components"))
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
    result = refine(data_config, train_config, config, int_list(seeds, "--seeds") or [], out)
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
    show = stdout()
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
    threads: Threads = None,
) -> None:
    """Accuracy and OOD detection (AUROC, FPR95; energy and MSP) with and without VOS, over seeds."""
    check_threads(threads)  # before the wing's libraries load
    from neuronmap.outliers.evaluation import evaluate

    data_config, train_config = _outlier_configs(locals())
    result = evaluate(
        data_config, train_config, int_list(seeds, "--seeds") or [], out, far=far, far_limit=far_limit
    )
    from neuronmap.outliers.evaluation import markdown_table

    show = stdout()
    show.print(markdown_table(result), markup=False, highlight=False)
    show.print(f"[bold]{out}[/]: metrics.json, metrics.md ({result['seconds']} s)")
