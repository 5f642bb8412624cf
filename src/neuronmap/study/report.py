"""The study's report: ``report.md`` and ``report.html`` (the same blocks rendered twice) and figures (PNG/SVG).

Figures: one scatter row per shape measure (against each editability measure), the best layer against the causal
peak layer, the mean causal profiles, and the flip norm by shape class. The seed facts (Eiffel Tower, White House,
California) are marked and labelled in every figure.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuronmap.rundir import atomic_write_bytes, atomic_write_text
from neuronmap.study.conclusion import conclude

SEED_COLOURS = {"Eiffel Tower": "#d62728", "White House": "#1f77b4", "California": "#ff7f0e"}
TABLE_COLUMNS = (
    "fact_id", "seed", "prompt", "target_true", "target_new", "p_clean", "mlp_peak_layer", "mlp_peak_effect",
    "mlp_entropy", "mlp_layers_above_half", "neurons_80", "gini", "shape_class", "flip_norm", "flip_status",
    "efficacy_margin", "paraphrase", "neighborhood", "best_layer",
)  # fmt: skip


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, searchable SVGs
    matplotlib.rcParams["svg.hashsalt"] = "neuronmap"  # reproducible ids
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, base: Path, formats: Sequence[str]) -> list[Path]:
    plt = _plt()
    paths = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=100, metadata={"Date": None} if fmt == "svg" else None)
        path = base.with_suffix(f".{fmt}")
        atomic_write_bytes(buf.getvalue(), path)
        paths.append(path)
    plt.close(fig)
    return paths


def _mark_seeds(ax: Any, table: pd.DataFrame, x: str, y: str, jitter: np.ndarray | None = None) -> None:
    seeds = table[table["seed"] != ""]
    for i, row in seeds.iterrows():
        dx, dy = (0.0, 0.0) if jitter is None else jitter[table.index.get_loc(i)]
        xv, yv = row[x] + dx, row[y] + dy
        if not (np.isfinite(xv) and np.isfinite(yv)):
            continue
        colour = SEED_COLOURS.get(row["seed"], "black")
        ax.scatter([xv], [yv], marker="*", s=160, color=colour, edgecolor="black", zorder=3)
        ax.annotate(
            f"{row['seed']} ({row['relation']})",
            (xv, yv),
            fontsize=6,
            xytext=(3, 3),
            textcoords="offset points",
        )


def scatter_figures(
    table: pd.DataFrame,
    corr: pd.DataFrame,
    shapes: Sequence[str],
    edits: Sequence[str],
    folder: Path,
    formats: Sequence[str],
) -> list[Path]:
    plt = _plt()
    paths = []
    for s in shapes:
        fig, axes = plt.subplots(1, len(edits), figsize=(3.2 * len(edits), 3.2), squeeze=False)
        fig.subplots_adjust(left=0.06, right=0.98, bottom=0.16, top=0.9, wspace=0.35)
        for ax, e in zip(axes[0], edits, strict=True):
            ax.scatter(table[s], table[e], s=14, color="grey", alpha=0.7)
            _mark_seeds(ax, table, s, e)
            row = corr[(corr["shape"] == s) & (corr["editability"] == e)].iloc[0]
            ax.set_title(f"rho {row['rho']:+.2f} [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]", fontsize=8)
            ax.set_xlabel(s, fontsize=8)
            ax.set_ylabel(e, fontsize=8)
            ax.tick_params(labelsize=7)
        paths += _save(fig, folder / f"scatter_{s}", formats)
    return paths


def layer_figure(table: pd.DataFrame, folder: Path, formats: Sequence[str], seed: int = 0) -> list[Path]:
    plt = _plt()
    jitter = np.random.default_rng(seed).uniform(-0.3, 0.3, size=(len(table), 2))
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    fig.subplots_adjust(left=0.14, bottom=0.12)
    ax.scatter(
        table["mlp_peak_layer"] + jitter[:, 0],
        table["best_layer"] + jitter[:, 1],
        s=14,
        color="grey",
        alpha=0.7,
    )
    _mark_seeds(ax, table, "mlp_peak_layer", "best_layer", jitter)
    top = float(np.nanmax(table[["mlp_peak_layer", "best_layer"]].to_numpy())) + 1
    ax.plot([0, top], [0, top], color="black", lw=0.6, ls="--")
    ax.set_xlabel("peak causal layer (MLP, where the fact lives)")
    ax.set_ylabel("best layer to edit (ROME sweep)")
    ax.set_title("Hase et al. test (jittered)", fontsize=9)
    return _save(fig, folder / "best_vs_peak_layer", formats)


def _live(profiles: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """Each fact's profile rows at the subject token where it lives (``table``'s ``live_index``)."""
    live = table.set_index("fact_id")["live_index"]
    return profiles[profiles["subject_index"].to_numpy() == live.reindex(profiles["fact_id"]).to_numpy()]


def profile_figure(
    table: pd.DataFrame, profiles: pd.DataFrame, folder: Path, formats: Sequence[str]
) -> list[Path]:
    plt = _plt()
    kinds = [k for k in ("hidden", "mlp", "attn") if k in set(profiles["kind"])]
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.6 * len(kinds), 3.4), squeeze=False)
    fig.subplots_adjust(left=0.06, right=0.98, bottom=0.14, top=0.9, wspace=0.25)
    seeds = table[table["seed"] != ""]
    for ax, kind in zip(axes[0], kinds, strict=True):
        sel = _live(profiles[profiles["kind"] == kind], table)
        mean = sel.groupby("layer")["indirect"].mean()
        ax.plot(mean.index, mean.to_numpy(), color="black", lw=2, label="mean")
        for _, row in seeds.iterrows():
            mine = sel[sel["fact_id"] == row["fact_id"]].sort_values("layer")
            ax.plot(
                mine["layer"], mine["indirect"], color=SEED_COLOURS.get(row["seed"], "grey"), lw=1,
                marker="*", ms=5, label=f"{row['seed']} ({row['relation']})",
            )  # fmt: skip
        ax.set_title(f"{kind}: indirect effect where the fact lives", fontsize=8)
        ax.set_xlabel("layer", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][-1].legend(fontsize=6)
    return _save(fig, folder / "profiles", formats)


def class_figure(table: pd.DataFrame, folder: Path, formats: Sequence[str], seed: int = 0) -> list[Path]:
    plt = _plt()
    classes = sorted(table["shape_class"].unique())
    pos = {c: i for i, c in enumerate(classes)}
    x = table["shape_class"].map(pos).to_numpy(dtype=float)
    jitter = np.zeros((len(table), 2))
    jitter[:, 0] = np.random.default_rng(seed).uniform(-0.2, 0.2, size=len(table))
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    fig.subplots_adjust(left=0.14, bottom=0.18)
    ax.scatter(x + jitter[:, 0], table["flip_norm"], s=14, color="grey", alpha=0.7)
    marked = table.assign(_x=x)
    _mark_seeds(ax, marked, "_x", "flip_norm", jitter)
    ax.set_xticks(range(len(classes)), classes, fontsize=7, rotation=15)
    ax.set_ylabel("flip norm (|delta| / |v_init|)")
    ax.set_yscale("log")
    return _save(fig, folder / "flip_by_class", formats)


# ---- the document ----------------------------------------------------------------------------------------
_UNKNOWN_FATE = {
    "all": " (studied all the same)",
    "rank": " (studied where the true target ranks above the new one: column studied)",
}


_PREFIXES = {
    "bare": "the rewrite prompt alone, no generated context prefixes",
    "hparams": "the rewrite prompt and the hparams' generated context prefixes, as ROME optimises",
}


def _blocks(
    table: pd.DataFrame,
    corr: pd.DataFrame,
    summary: dict[str, Any],
    params: dict[str, Any],
    unknown: pd.DataFrame,
    figures: list[Path],
    out: Path,
) -> list[tuple[str, Any]]:
    b: list[tuple[str, Any]] = [("h1", f"Which facts are easy to edit? {params['model']}")]
    b.append(("p", (
        f"{summary['studied']} facts studied of {summary['facts']} ({params['facts']}, limit {params['limit']}, "
        f"keep {params['keep']}); {summary['unknown']} the model does not know are listed at the end"
        f"{_UNKNOWN_FATE.get(params['keep'], ' (not studied)')}."
        + (f" Included: {summary['inclusion']}." if summary.get("inclusion") else "")
    )))  # fmt: skip
    b.append(("h2", "Conclusion"))
    b += [("p", line) for line in conclude(table, corr, summary)]
    b.append(("h2", "Settings and budget choices"))
    b.append(("ul", [
        f"Causal tracing (hidden, mlp, attn) at each subject token alone, on layers {params['traced_layers']}; "
        "shape measured where the fact lives (the subject token with the largest MLP peak indirect effect) and at "
        "the last subject token (ROME's convention; the per-fact table's _last columns), "
        f"{params['samples']} noise draws, noise {params['noise']} x the std of the subjects' embeddings "
        f"(= {params['noise_std']:.4g}); mlp/attn restore a window of {params['window']} layers (ROME).",
        "Neuron breadth from the attribution method (activation x gradient of log P(true)) at the same token, "
        "all layers and neurons.",
        f"ROME at layers {params['sweep_layers']} (default layer {params['edit_layer']}), "
        f"{params['steps']} optimisation steps at most, prefixes: {params['prefixes']} "
        f"({_PREFIXES[params['prefixes']]}), statistics cached per layer and shared by all facts.",
        f"Flip norm: bisection ({params['flip_iters']} steps, log scale) on the norm of the added value vector in "
        f"[{params['flip_range'][0]}, {params['flip_range'][1]}] x |v_init|, mode '{params['flip_mode']}' "
        "(scale: along the direction ROME optimised at full clamp; clamp: re-optimised under each clamp). "
        "'not_flipped' values are censored at the upper end.",
        "Best layer: the swept layer with the largest mean P(new) - P(true) over the rewrite prompt and its paraphrases.",
        f"Shape classes: {summary['axes']}.",
        f"Spearman correlations, percentile bootstrap 95% intervals ({params['bootstrap']} resamples), "
        "p-values from scipy, Benjamini-Hochberg adjustment over all pairs in the table; seed "
        f"{params['seed']}.",
    ]))  # fmt: skip
    b.append(("h2", "Correlations"))
    b.append(("table", corr.round(4)))
    b.append(("h2", "Best layer vs peak causal layer (Hase et al. 2023)"))
    agree = pd.DataFrame([{"kind": k, **v} for k, v in summary["agreement"].items()]).round(4)
    b.append(("table", agree))
    b.append(("h2", "Figures"))
    b += [("img", p.relative_to(out)) for p in figures if p.suffix == ".png"]
    b.append(("h2", "Per-fact table"))
    cols = [c for c in TABLE_COLUMNS if c in table.columns]
    b.append(("table", table[cols].round(4)))
    b.append(("h2", f"Facts the model does not know ({len(unknown)})"))
    b.append(("table", unknown.round(4)) if len(unknown) else ("p", "None."))
    return b


def _md_table(df: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(map(cell, df.columns)) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines)


def render_markdown(blocks: list[tuple[str, Any]]) -> str:
    parts = []
    for kind, value in blocks:
        if kind == "h1":
            parts.append(f"# {value}")
        elif kind == "h2":
            parts.append(f"## {value}")
        elif kind == "p":
            parts.append(str(value))
        elif kind == "ul":
            parts.append("\n".join(f"- {v}" for v in value))
        elif kind == "table":
            parts.append(_md_table(value))
        elif kind == "img":
            parts.append(f"![{value.stem}]({value.as_posix()})")
    return "\n\n".join(parts) + "\n"


def _inline(text: str) -> str:
    """Escaped text with **bold** kept."""
    pieces = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(pieces))


def render_html(blocks: list[tuple[str, Any]]) -> str:
    body = []
    for kind, value in blocks:
        if kind in ("h1", "h2"):
            body.append(f"<{kind}>{html.escape(str(value))}</{kind}>")
        elif kind == "p":
            body.append(f"<p>{_inline(str(value))}</p>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{_inline(v)}</li>" for v in value) + "</ul>")
        elif kind == "table":
            body.append(value.to_html(index=False, escape=True, na_rep="NaN", border=0))
        elif kind == "img":
            src = html.escape(value.as_posix(), quote=True)
            body.append(f'<figure><img src="{src}" alt="{html.escape(value.stem)}"></figure>')
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;font-size:14px}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "img{max-width:100%}"
    )
    title = html.escape(str(blocks[0][1])) if blocks else "report"
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title><style>{style}</style></head>'
        f"<body>{''.join(body)}</body></html>\n"
    )


def write_report(
    out: Path,
    table: pd.DataFrame,
    profiles: pd.DataFrame,
    corr: pd.DataFrame,
    summary: dict[str, Any],
    params: dict[str, Any],
    unknown: pd.DataFrame,
    shapes: Sequence[str],
    edits: Sequence[str],
    formats: Sequence[str] = ("png", "svg"),
) -> dict[str, Any]:
    """Figures, ``report.md`` and ``report.html`` in ``out``; returns their paths (relative to ``out``, so the
    summary is the same wherever the study is written) and the conclusion."""
    folder = out / "figures"
    figures: list[Path] = []
    if formats:
        figures += scatter_figures(table, corr, shapes, edits, folder, formats)
        figures += layer_figure(table, folder, formats, params["seed"])
        figures += profile_figure(table, profiles, folder, formats)
        figures += class_figure(table, folder, formats, params["seed"])
    blocks = _blocks(table, corr, summary, params, unknown, figures, out)
    atomic_write_text(render_markdown(blocks), out / "report.md")
    atomic_write_text(render_html(blocks), out / "report.html")
    return {
        "report": ["report.md", "report.html"],
        "figures": [p.relative_to(out).as_posix() for p in figures],
        "conclusion": conclude(table, corr, summary),
    }
