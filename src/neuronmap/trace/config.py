"""The trace stage's parameters and their checks, free of torch: every mistake in them (and in the context file
they name) is reported before the model or its libraries load, by the CLI and by ``trace_run`` alike.

The names the checks allow live here and the modules that implement them import them: ``trace.methods`` the
methods, positions and integrated-gradients options, ``trace.events`` the each-token methods, ``trace.batch`` the
``--truncate`` modes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from neuronmap.contexts.group_config import parse_groupings
from neuronmap.errors import NeuronmapError
from neuronmap.models.memory import memory_budget
from neuronmap.models.spec import check_dtype, check_model

if TYPE_CHECKING:
    from neuronmap.contexts.loaders import ContextSet

METHODS = ("attribution", "integrated-gradients", "ablation", "causal")
POSITIONS = ("target", "all")
IG_METRICS = (
    "logprob",
    "prob",
)  # integrated-gradients: the target's log-probability, or (knowledge-neurons) its probability
IG_RULES = (
    "midpoint",
    "right",
    "linspace",
)  # integrated-gradients: Riemann points, or knowledge-neurons' linspace
EACH_TOKEN_METHODS = ("direct", "attribution", "activation")
TRUNCATE = ("left",)  # --truncate: keep an input's last tokens (None refuses an input past the window)


@dataclass
class TraceConfig:
    """Everything that decides a trace's output (device and threads do not, within float tolerance)."""

    model: str = "smollm2-135m"
    # A file, builtin:NAME, or rows (a list of dicts, a DataFrame): trace_run records rows as their source's name,
    # "<N contexts in memory, sha256 HASH>" (contexts.loaders), so a rerun with other rows is told apart.
    contexts: str = "builtin:facts"
    method: str = "attribution"
    top_k: int | None = 100
    threshold: float | None = None
    layers: list[int] | None = None
    positions: str | None = None  # target|all; causal: subject|all
    per_position: bool = False
    steps: int = 20
    ig_metric: str = "logprob"  # integrated-gradients: logprob | prob (knowledge-neurons' metric)
    ig_rule: str = "midpoint"  # integrated-gradients: midpoint | right | linspace (knowledge-neurons' points)
    samples: int = 10
    noise: float = 3.0
    candidates: int = 256
    ablate: str = "zero"
    keep: str = "auto"
    limit: int | None = None
    seed: int = 0
    batch_size: int = 8
    part_size: int = 256
    # Each-token traces (trace.events): documents in, one event per token; min_prefix tokens before the first.
    each_token: bool = False
    min_prefix: int = 8
    truncate: str | None = None  # None refuses a context longer than the model's window; "left" keeps its end
    # Memory a batch may take (bytes, "6GB", "50%"); batches that would take more are split (models.memory).
    max_memory: str | int | None = field(default=None, metadata={"output": False})
    device: str | None = field(default=None, metadata={"output": False})
    dtype: str | None = None
    threads: int | None = field(default=None, metadata={"output": False})
    backend: str = field(default="local", metadata={"output": False})  # local | ray
    address: str | None = field(default=None, metadata={"output": False})  # Ray cluster; None starts one
    workers: int = field(default=2, metadata={"output": False})
    gpus_per_worker: float = field(default=0.0, metadata={"output": False})
    # pos and/or sense: group columns added after the trace (a stage of its own, so not a trace parameter).
    group_by: str | None = field(default=None, metadata={"output": False})

    def output_params(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.metadata.get("output", True)}

    def validate(self) -> None:
        """Check every parameter (and the model name's form: a path-like name must be a folder) without loading
        anything; fills in ``positions``' default."""
        if self.each_token:
            self._validate_each_token()
        elif self.method not in METHODS:
            raise NeuronmapError(f"unknown method '{self.method}'; choose one of {', '.join(METHODS)}")
        allowed = ("subject", "all") if self.method == "causal" else POSITIONS
        if self.positions is None:
            self.positions = allowed[0]
        if self.positions not in allowed:
            raise NeuronmapError(f"--positions for {self.method} must be one of {', '.join(allowed)}")
        if self.per_position and self.method not in ("attribution", "integrated-gradients"):
            raise NeuronmapError("--per-position is available for attribution and integrated-gradients only")
        if self.per_position and self.positions != "all":
            raise NeuronmapError("--per-position needs --positions all")
        if self.top_k is None and self.threshold is None:
            raise NeuronmapError("give --top-k or --threshold (or both): scores are stored sparsely")
        for name in (
            "top_k",
            "steps",
            "samples",
            "candidates",
            "batch_size",
            "part_size",
            "limit",
            "threads",
        ):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise NeuronmapError(f"--{name.replace('_', '-')} must be at least 1 (got {value})")
        if self.threshold is not None and not (self.threshold >= 0 and math.isfinite(self.threshold)):
            raise NeuronmapError("--threshold must be a finite number >= 0")
        if not (self.noise >= 0 and math.isfinite(self.noise)):
            raise NeuronmapError("--noise must be a finite number >= 0")
        if self.ig_metric not in IG_METRICS:
            raise NeuronmapError(f"--ig-metric must be one of {', '.join(IG_METRICS)}")
        if self.ig_rule not in IG_RULES:
            raise NeuronmapError(f"--ig-rule must be one of {', '.join(IG_RULES)}")
        if self.ablate not in ("zero", "mean"):
            raise NeuronmapError("--ablate must be zero or mean")
        if self.backend not in ("local", "ray"):
            raise NeuronmapError("--backend must be local or ray")
        if self.workers < 1 or self.gpus_per_worker < 0:
            raise NeuronmapError("--workers must be at least 1 and --gpus-per-worker at least 0")
        if self.keep not in ("auto", "known", "all"):
            raise NeuronmapError("--keep must be auto, known or all")
        if self.truncate is not None and self.truncate not in TRUNCATE:
            raise NeuronmapError(
                f"--truncate must be {' or '.join(TRUNCATE)} (or left out to refuse long contexts)"
            )
        if self.group_by is not None:
            parse_groupings(self.group_by)
        memory_budget(self.max_memory)  # a malformed size is refused before the model loads
        check_dtype(self.dtype)
        check_model(self.model)

    def _validate_each_token(self) -> None:
        if self.method not in EACH_TOKEN_METHODS:
            raise NeuronmapError(
                f"--each-token takes --method {', '.join(EACH_TOKEN_METHODS)} (got '{self.method}')"
            )
        if self.min_prefix < 1:
            raise NeuronmapError(f"--min-prefix must be at least 1 (got {self.min_prefix})")
        if self.truncate is not None:
            raise NeuronmapError("--each-token cuts long documents into windows itself; leave out --truncate")
        if self.per_position:
            raise NeuronmapError("--each-token scores every position already; leave out --per-position")
        if self.backend != "local":
            raise NeuronmapError("--each-token runs on the local backend only (no --backend ray yet)")
        if self.keep == "known":
            raise NeuronmapError(
                "--each-token keeps every event (the 'known' column says which the model predicts top-1); "
                "leave out --keep known"
            )

    def load_contexts(self) -> ContextSet:
        """The contexts (documents, with ``each_token``) the config names, read and checked: every mistake of
        the file (missing, malformed, an empty target...) is found here, before torch loads."""
        from neuronmap.contexts.loaders import load_contexts, load_documents

        load = load_documents if self.each_token else load_contexts
        return load(self.contexts, limit=self.limit, seed=self.seed)
