"""The map stage's parameters and their checks, free of numpy, scipy and pandas: a mistake in them is reported
before the stage's libraries load (``neuronmap map`` checks them first). The names the checks allow live here and
the modules that implement them import them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from neuronmap.errors import NeuronmapError

METHODS = ("leiden", "louvain", "spectral")
SCOPES = ("cross-layer", "within-layer")
BACKENDS = ("local", "ray")  # where the projection's row blocks run
# spectral: the k whose n-cut beats the pairs null by the largest z, or by the largest gap (null mean - n-cut)
K_SELECT = ("z", "gap")
EDGE_SCORES = ("positive", "abs", "signed")  # a score's edge weight: max(s, 0), |s| or s
TOKEN_FIELDS = ("target", "input")  # a context's token: its target's first, or the one at the scored position
PROJECTIONS = ("collaboration", "weighted", "cosine")
NULL_KINDS = ("edges", "pairs", "swaps")  # appended, so the seeds of the older kinds stay
EXPORT_FORMATS = ("graphml", "gexf")


def parse_k_range(value: str | Sequence[int]) -> tuple[int, ...]:
    """``"2..50"`` (inclusive), ``"2,4,8"``, ``"8"`` or a sequence of ints."""
    if isinstance(value, str):
        text = value.replace(" ", "")
        try:
            if ".." in text:
                low, high = (int(x) for x in text.split(".."))
                ks = tuple(range(low, high + 1))
            else:
                ks = tuple(int(x) for x in text.split(",") if x)
        except ValueError:
            raise NeuronmapError(
                f"--k-range {value!r}: expected LOW..HIGH, a comma list or one int"
            ) from None
    else:
        ks = tuple(int(k) for k in value)
    if not ks or min(ks) < 2:
        raise NeuronmapError(f"--k-range {value!r}: needs at least one k, each k >= 2")
    return tuple(sorted(set(ks)))


def _choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise NeuronmapError(f"--{name.replace('_', '-')} {value!r}: expected one of {', '.join(choices)}")


def _check(ok: bool, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise NeuronmapError(f"--{name.replace('_', '-')} {value!r}: must be {rule}")


@dataclass(frozen=True)
class MapConfig:
    """Parameters of the map stage, one per CLI option (see ``neuronmap map --help``)."""

    edge_score: str = "positive"
    min_edge: float = 0.0
    top_k: int | None = None
    token_field: str = "target"
    projection: str = "weighted"
    neighbors: int | None = 64
    threshold: float | None = None
    method: str = "leiden"
    resolution: float = 1.0
    k_range: str | Sequence[int] = "2..50"
    k_select: str = "z"
    scope: str = "cross-layer"
    null_samples: int = 20
    nulls: str | Sequence[str] = NULL_KINDS  # the null kinds drawn (each costs null_samples networks)
    stability_seeds: int = 5
    merge_threshold: float = 0.8
    top_tokens: int = 50
    export: str | Sequence[str] = ("graphml", "gexf")
    export_max_edges: int = 250_000  # networkx writers: about 30 s and a few hundred MB per 200k edges
    seed: int = 0
    drop_generic: bool = False  # leave generic neurons (graph.meaning) out of the graph
    embeddings: str | None = None  # .npy or .safetensors token embeddings; default: the model's weights

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        set_(self, "k_range", parse_k_range(self.k_range))
        export = self.export.split(",") if isinstance(self.export, str) else list(self.export)
        set_(self, "export", tuple(x.strip() for x in export if x.strip() and x.strip() != "none"))
        set_(self, "neighbors", self.neighbors or None)
        nulls = self.nulls.split(",") if isinstance(self.nulls, str) else list(self.nulls)
        nulls = [x.strip() for x in nulls if x.strip()]
        for kind in nulls:
            _choice("nulls", kind, NULL_KINDS)
        _check(bool(nulls), "nulls", self.nulls, f"one or more of {', '.join(NULL_KINDS)}")
        set_(self, "nulls", tuple(k for k in NULL_KINDS if k in nulls))
        for name, choices in [
            ("edge_score", EDGE_SCORES),
            ("token_field", TOKEN_FIELDS),
            ("projection", PROJECTIONS),
            ("method", METHODS),
            ("scope", SCOPES),
            ("k_select", K_SELECT),
        ]:
            _choice(name, getattr(self, name), choices)
        for fmt in self.export:
            _choice("export", fmt, EXPORT_FORMATS)
        _check(self.min_edge >= 0, "min_edge", self.min_edge, ">= 0")
        _check(self.top_k is None or self.top_k >= 1, "top_k", self.top_k, ">= 1")
        _check(self.neighbors is None or self.neighbors >= 1, "neighbors", self.neighbors, ">= 0 (0: exact)")
        _check(self.threshold is None or self.threshold > 0, "threshold", self.threshold, "> 0")
        _check(self.resolution > 0, "resolution", self.resolution, "> 0")
        _check(self.null_samples >= 0, "null_samples", self.null_samples, ">= 0")
        _check(self.stability_seeds >= 0, "stability_seeds", self.stability_seeds, ">= 0")
        _check(self.merge_threshold > 0, "merge_threshold", self.merge_threshold, "> 0 (above 1: no merging)")
        _check(self.top_tokens >= 1, "top_tokens", self.top_tokens, ">= 1")
        _check(self.export_max_edges >= 0, "export_max_edges", self.export_max_edges, ">= 0")
        _check(self.seed >= 0, "seed", self.seed, ">= 0")
        if self.embeddings is not None:
            path = Path(self.embeddings).expanduser()
            _check(
                path.is_file() and path.suffix in (".npy", ".safetensors"),
                "embeddings",
                self.embeddings,
                "an existing .npy or .safetensors file",
            )
        if self.method == "spectral" and len(self.k_range) > 1 and self.null_samples < 2:
            raise NeuronmapError(
                "--method spectral chooses k by comparing the n-cut with shuffled nulls: "
                "use --null-samples 2 or more, or a single --k-range value"
            )
        if self.method == "spectral" and len(self.k_range) > 1 and "pairs" not in self.nulls:
            raise NeuronmapError(
                "--method spectral chooses k against the pairs null: keep pairs in --nulls, or give a single "
                "--k-range value"
            )

    def record(self) -> dict[str, Any]:
        """The parameters as plain JSON values (as stored in run.json and summary.json)."""
        return json.loads(json.dumps(asdict(self)))
