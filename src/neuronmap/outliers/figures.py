"""Static figures of the outlier wing (matplotlib, imported only here and only when a figure is asked for)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuronmap.errors import NeuronmapError


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise NeuronmapError(
            "figures need matplotlib: pip install matplotlib (or pass --no-figure)"
        ) from None
    matplotlib.use("Agg")  # files only; never opens a window
    import matplotlib.pyplot as plt

    return plt


def plot_synthesis(frame: Any, label: str, path: str | Path) -> Path:
    """Probability of the class (top) and energy (bottom) against Mahalanobis distance, one colour per level.

    Points where the class stops being predicted sit below the dashed line of the runner-up tie; the
    boundary points lie on that tie by construction.
    """
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6.5), sharex=True, constrained_layout=True)
    groups = frame.groupby(["mode", "level"], dropna=False, sort=False)
    cmap = plt.get_cmap("viridis")
    for i, ((mode, level), group) in enumerate(groups):
        if mode == "boundary":
            name, colour, marker = "decision boundary", "crimson", "x"
        else:
            name = f"likelihood quantile {level:g}" if mode == "quantile" else f"Mahalanobis radius {level:g}"
            colour, marker = cmap(i / max(1, len(groups) - 1) * 0.85), "o"
        still = group["margin"] > 0
        for ax, column in ((top, "p_class"), (bottom, "energy")):
            ax.scatter(group["mahalanobis"][still], group[column][still], s=14, color=colour, marker=marker,
                       alpha=0.8, label=name if ax is top else None)  # fmt: skip
            hollow = {"facecolors": "none", "edgecolors": colour} if marker == "o" else {"color": colour}
            ax.scatter(group["mahalanobis"][~still], group[column][~still], s=14, marker=marker, alpha=0.5,
                       **hollow)  # fmt: skip
    top.set_ylabel(f"p({label})")
    top.set_ylim(-0.02, 1.02)
    top.set_title(
        f"Synthetic penultimate activations of class '{label}'\n(hollow: no longer predicted as it)"
    )
    top.legend(fontsize=7, loc="best")
    bottom.set_ylabel("energy (higher = less confident)")
    # Boundary crossings can lie 10x further out than the samples: a log axis keeps both readable.
    bottom.set_xscale("log")
    bottom.set_xlabel("Mahalanobis distance from the class (log scale)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return path
