"""The editability study's options and their checks, free of torch and numpy: ``neuronmap study`` refuses a
mistake in them before the model loads (``study.api`` checks them again for Python callers)."""

from __future__ import annotations

import math
from pathlib import Path

from neuronmap.errors import NeuronmapError

FLIP_MODES = ("scale", "clamp")
KEEP = ("known", "rank", "all")
RANK_MIN_P = 0.02  # a floor on P(true) for --keep rank: above the new target, and not a guess among thousands
INCLUSION = {
    "known": "facts whose true target is the model's top-1 prediction (every target token)",
    "rank": "facts whose true target is top-1, or ranks above the rewrite's new target with P(true) >= {min_p} "
    "(P: exp of the mean log-probability per target token)",
    "all": "every fact, known or not",
}


def check_facts_file(facts: str) -> None:
    """A fact set named as a file that is not there (``builtin:`` sets are checked when they load)."""
    if not facts.startswith("builtin:") and not Path(facts).expanduser().is_file():
        raise NeuronmapError(f"{facts}: no such file")


def inclusion(keep: str, min_p: float) -> str:
    """The rule that chose the studied facts, in words (the summary records it)."""
    return INCLUSION[keep].format(min_p=min_p)


def check_study_options(
    *,
    keep: str = "known",
    min_p: float = RANK_MIN_P,
    flip_mode: str = "scale",
    prefixes: str = "bare",
    trace_every: int = 3,
    samples: int = 5,
    steps: int = 6,
    flip_iters: int = 8,
    n_boot: int = 2000,
    noise: float = 3.0,
    workers: int = 1,
) -> None:
    """The first mistake in the study's options (``study_editability``'s defaults), as the CLI names them."""
    if keep not in KEEP:
        raise NeuronmapError(f"--keep takes {', '.join(KEEP)}, got {keep!r}")
    if not 0.0 <= min_p <= 1.0:
        raise NeuronmapError(f"--min-p must be within [0, 1], got {min_p}")
    if flip_mode not in FLIP_MODES:
        raise NeuronmapError(f"--flip-mode takes {' or '.join(FLIP_MODES)}, got {flip_mode!r}")
    if prefixes not in ("bare", "hparams"):
        raise NeuronmapError(f"--prefixes takes bare or hparams, got {prefixes!r}")
    for name, value in (("--trace-every", trace_every), ("--samples", samples), ("--steps", steps),
                        ("--workers", workers)):  # fmt: skip
        if value < 1:
            raise NeuronmapError(f"{name} must be at least 1, got {value}")
    if flip_iters < 1 or n_boot < 100:
        raise NeuronmapError("--flip-iters must be at least 1 and --bootstrap at least 100")
    if not (noise >= 0 and math.isfinite(noise)):
        raise NeuronmapError("--noise must be a finite number >= 0")
