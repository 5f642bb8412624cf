"""``neuronmap figures RUN``: static figures for reports, as PNG and SVG in ``RUN/figures/``.

- ``cluster_map``: the clusters at the page's positions, sized by neurons, the largest labelled with tokens;
  clusters whose top tokens pass the coherence test (``clusters.parquet`` ``coherent``) drawn as stars;
- ``layers``: layer x cluster heatmap of neuron counts (the ``MAX_CLUSTERS`` largest clusters);
- ``clusterability``: the n-cut against k (spectral) or the modularity per scope unit (Leiden, Louvain), with
  the band of the shuffled nulls (mean +- 2 standard deviations, one band per null kind); the modularity of the
  pruned graph that was clustered (what the nulls are compared with) and of the full projection;
- ``token_groups``: token groups x clusters, each group's weight share per cluster;
- ``groups_<column>``: the group x cluster matrix of each context group column (share of the group's score
  mass per cluster).

Files are byte-identical for the same run: no dates in the metadata, a fixed SVG id salt.
"""

from __future__ import annotations

import io
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from neuronmap.explore.data import RunView, load_view
from neuronmap.formats import FIGURE_FORMATS, check_figure_formats
from neuronmap.rundir import FIGURES, RunDir, atomic_write_bytes, record_views

if TYPE_CHECKING:
    from matplotlib.figure import Figure

MAX_CLUSTERS = 40  # columns of the heatmaps
MAX_VALUES = 30  # rows of a group x cluster matrix
LABELLED = 12  # clusters named on the map
DPI = 150
NULL_COLORS = (("swaps", "C3"), ("pairs", "C1"), ("edges", "C2"))


def _text(text: str) -> str:
    """Text as matplotlib should print it: literally, without mathtext."""
    return text.replace("$", r"\$")


def _token(text: str) -> str:
    """A token with its spaces and newlines visible."""
    return _text(text.replace(" ", "\u2423").replace("\n", "\u23ce"))


def _safe_name(column: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", column)[:40] or "group"


def _top_tokens(view: RunView, cluster: int, n: int) -> str:
    ct = view.map.cluster_tokens
    rows = ct[(ct["partition"] == "cluster") & (ct["cluster"] == cluster)].sort_values("rank").head(n)
    return " ".join(_token(t) for t in rows["token"])


def _cluster_map(view: RunView) -> Figure:
    from matplotlib.figure import Figure

    part = view.partitions["cluster"]
    fig = Figure(figsize=(8, 6.5))
    ax = fig.add_subplot()
    sizes = 15 + 600 * np.sqrt(part.size / max(part.size.max(), 1))
    colors = [f"C{c % 10}" for c in range(part.n)]
    clusters = view.map.clusters
    coherent = (
        clusters["coherent"].to_numpy(bool) if "coherent" in clusters.columns else np.zeros(part.n, bool)
    )
    for marker, chosen in (("o", ~coherent), ("*", coherent)):
        if chosen.any():
            ax.scatter(
                part.xy[chosen, 0],
                part.xy[chosen, 1],
                s=sizes[chosen] * (1.6 if marker == "*" else 1.0),
                c=[colors[c] for c in np.flatnonzero(chosen)],
                marker=marker,
                alpha=0.7,
                edgecolors="k",
                linewidths=0.4,
                label="coherent top tokens" if marker == "*" else None,
            )
    if coherent.any():
        ax.legend(fontsize=7, loc="lower right")
    for c in np.argsort(-part.size, kind="stable")[:LABELLED]:
        ax.annotate(
            f"#{c}{'*' if coherent[c] else ''} {_top_tokens(view, int(c), 3)}",
            part.xy[c],
            fontsize=7,
            ha="center",
            va="bottom",
            xytext=(0, 6),
            textcoords="offset points",
        )
    ax.margins(0.15)  # room for the labels
    ax.set_xticks([])
    ax.set_yticks([])
    title = f"{part.n} clusters, placed by token-profile similarity (size: neurons)"
    if coherent.any():
        title += f"\n{int(coherent.sum())} with coherent top tokens (*), {part.size[coherent].sum()} neurons"
    ax.set_title(title)
    return fig


def _heatmap(fig: Figure, z: np.ndarray, xlabels: list[str], ylabels: list[str], bar: str, cmap: str) -> None:
    ax = fig.add_subplot()
    image = ax.imshow(z, aspect="auto", cmap=cmap, interpolation="nearest")
    ax.set_xticks(range(len(xlabels)), xlabels, rotation=90, fontsize=6)
    ax.set_yticks(range(len(ylabels)), ylabels, fontsize=7)
    fig.colorbar(image, ax=ax, label=bar, shrink=0.8)


def _largest(values: np.ndarray) -> np.ndarray:
    return np.sort(np.argsort(-values, kind="stable")[:MAX_CLUSTERS])


def _layers(view: RunView) -> Figure:
    from matplotlib.figure import Figure

    part = view.partitions["cluster"]
    shown = _largest(part.size)
    fig = Figure(figsize=(9, 1.5 + 0.22 * view.n_layers))
    _heatmap(
        fig,
        part.layer_hist[shown].T,
        [f"#{c}" for c in shown],
        [str(lay) for lay in range(view.n_layers)],
        "neurons",
        "Blues",
    )
    fig.axes[0].set_xlabel("cluster")
    fig.axes[0].set_ylabel("layer")
    fig.axes[0].set_title(f"neurons per layer of the {len(shown)} largest clusters")
    return fig


def _clusterability(view: RunView) -> Figure:
    from matplotlib.figure import Figure

    units = view.summary.get("units", [])
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    curve_units = [u for u in units if u.get("ncut_curve")]
    if curve_units:  # spectral: n-cut against k, per unit (the first few)
        for u in curve_units[:4]:
            name = "all layers" if u.get("layer") is None else f"layer {u['layer']}"
            k = np.array([p["k"] for p in u["ncut_curve"]])
            ax.plot(k, [p["ncut"] for p in u["ncut_curve"]], marker="o", ms=3, label=f"n-cut ({name})")
            for kind, color in NULL_COLORS:
                mean, std = _band(u["ncut_curve"], kind)
                if mean is not None:
                    ax.fill_between(
                        k,
                        mean - 2 * std,
                        mean + 2 * std,
                        color=color,
                        alpha=0.2,
                        label=f"{kind} null ±2 sd ({name})",
                    )
            if u.get("k"):
                ax.axvline(u["k"], color="k", ls=":", lw=1)
        ax.set_xlabel("k (clusters)")
        ax.set_ylabel("n-cut (lower: more clusterable)")
        ax.set_title("n-cut by number of clusters, against shuffled networks")
    else:  # leiden / louvain: one modularity per unit, the nulls as bands (or error bars for a single unit)
        x = np.arange(len(units))
        pruned = [u.get("modularity_pruned", u.get("modularity")) for u in units]  # older maps: "modularity"
        ax.plot(x, [np.nan if q is None else q for q in pruned], marker="o", color="C0", label="modularity")
        full = [u.get("modularity_full") for u in units]
        if any(q is not None for q in full):
            ax.plot(
                x,
                [np.nan if q is None else q for q in full],
                marker="D",
                ls="--",
                color="C4",
                label="modularity on the full projection (not tested)",
            )
        for offset, (kind, color) in zip((-0.12, 0.0, 0.12), NULL_COLORS, strict=True):
            mean, std = _band([u.get("clusterability") or {} for u in units], kind)
            if mean is None:
                continue
            label = f"{kind} null, mean ±2 sd"
            if len(units) == 1:
                ax.errorbar(x + offset, mean, yerr=2 * std, fmt="s", color=color, capsize=4, label=label)
            else:
                ax.fill_between(x, mean - 2 * std, mean + 2 * std, color=color, alpha=0.25, label=label)
        names = ["all layers" if u.get("layer") is None else str(u["layer"]) for u in units]
        ax.set_xticks(x, names, fontsize=7)
        ax.set_xlabel("layer (each clustered alone)" if len(units) > 1 else "")
        ax.set_ylabel("modularity (higher: more clusterable)")
        ax.set_title("modularity of the partition, against shuffled networks")
        if len(units) == 1:
            ax.set_xlim(-1, 1)
    ax.legend(fontsize=7)
    return fig


def _band(points: list[dict[str, Any]], kind: str) -> tuple[np.ndarray | None, np.ndarray]:
    """Null mean and standard deviation along a curve (NaN where a point has none); None when no point has."""
    stats = [p.get(kind) or {} for p in points]
    mean = np.array([np.nan if s.get("null_mean") is None else s["null_mean"] for s in stats], dtype=float)
    std = np.array([np.nan if s.get("null_std") is None else s["null_std"] for s in stats], dtype=float)
    return (None, std) if np.isnan(mean).all() else (mean, np.nan_to_num(std))


def _token_groups(view: RunView) -> Figure | None:
    from matplotlib.figure import Figure

    groups = view.map.token_groups
    if not len(groups):
        return None
    part = view.partitions["cluster"]
    n_groups = int(groups["group"].max()) + 1
    cols = np.searchsorted(view.tokens["token_id"].to_numpy(), groups["token_id"].to_numpy())
    members = sp.csr_array(
        (np.ones(len(groups)), (groups["group"].to_numpy(), cols)), shape=(n_groups, len(view.tokens))
    )
    weight = (members @ part.profiles.T).toarray()
    share = weight / np.maximum(weight.sum(axis=1, keepdims=True), 1e-300)
    shown = _largest(weight.sum(axis=0))
    rows = (
        groups.sort_values(["group", "rank"])
        .groupby("group")["token"]
        .apply(lambda t: " ".join(_token(x) for x in t.head(3)))
    )
    fig = Figure(figsize=(10, 1.5 + 0.25 * n_groups))
    _heatmap(
        fig,
        share[:, shown],
        [f"#{c}" for c in shown],
        [f"{g}: {rows.get(g, '')}" for g in range(n_groups)],
        "share of the group's weight",
        "YlOrRd",
    )
    fig.axes[0].set_xlabel("cluster")
    fig.axes[0].set_title("token groups and the clusters that carry them")
    return fig


def _group_matrix(view: RunView, column: str) -> Figure:
    from matplotlib.figure import Figure

    share = view.group_matrix("cluster", column)
    counts = np.bincount(view.codes[column][view.codes[column] >= 0], minlength=len(view.groups[column]))
    rows = np.arange(min(MAX_VALUES, len(share)))  # values are ordered by frequency
    mass = view.mass("cluster")
    total = np.bincount(
        mass["cluster"].to_numpy(), mass["mass"].to_numpy(), minlength=view.partitions["cluster"].n
    )
    shown = _largest(total)
    labels = [f"{_text(view.groups[column][v])} ({counts[v]})" for v in rows]
    fig = Figure(figsize=(10, 1.5 + 0.25 * len(rows)))
    _heatmap(
        fig,
        share[np.ix_(rows, shown)],
        [f"#{c}" for c in shown],
        labels,
        "share of the group's score mass",
        "YlOrRd",
    )
    fig.axes[0].set_xlabel("cluster")
    fig.axes[0].set_title(f"which clusters each {_text(column)} uses (contexts per value in brackets)")
    return fig


def write_figures(
    run: str | Path | RunDir,
    out: str | Path | None = None,
    formats: tuple[str, ...] = FIGURE_FORMATS,
    view: RunView | None = None,
) -> list[Path]:
    """Draw every figure of a mapped run into ``out`` (default ``RUN/figures``); returns the files written."""
    import matplotlib

    formats = check_figure_formats(formats)
    view = view or load_view(run)
    folder = Path(out) if out is not None else view.path / FIGURES
    figures: dict[str, Figure | None] = {
        "cluster_map": _cluster_map(view),
        "layers": _layers(view),
        "clusterability": _clusterability(view),
        "token_groups": _token_groups(view),
    }
    for column in view.groups:
        figures[f"groups_{_safe_name(column)}"] = _group_matrix(view, column)
    written = []
    with matplotlib.rc_context({"svg.hashsalt": "neuronmap", "font.size": 8}), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing")
        for name, fig in figures.items():
            if fig is None:
                continue
            fig.tight_layout()
            for fmt in formats:
                buffer = io.BytesIO()
                meta = {"Date": None} if fmt == "svg" else {"Software": None}
                fig.savefig(buffer, format=fmt, dpi=DPI, metadata=meta)
                path = folder / f"{name}.{fmt}"
                atomic_write_bytes(buffer.getvalue(), path)
                written.append(path)
    record_views(RunDir(view.path), "figures", written, {"formats": list(formats)})
    return written
