"""The mistakes in a model's name and dtype found without loading anything (no torch, no transformers): the
loader (``models.loader``) would report the same, seconds later, once its libraries are imported."""

from __future__ import annotations

import os
from pathlib import Path

from neuronmap.errors import NeuronmapError
from neuronmap.models.registry import EMBEDDED

# The dtypes a model loads in, as ``models.loader.DTYPES`` names them (same order).
DTYPE_NAMES = ("float32", "float64", "bfloat16", "float16")


def check_dtype(dtype: object) -> None:
    """``--dtype``: None (float32), a torch dtype, or one of :data:`DTYPE_NAMES`."""
    if isinstance(dtype, str) and dtype not in DTYPE_NAMES:
        raise NeuronmapError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPE_NAMES)}")


def check_model(spec: str | os.PathLike[str]) -> None:
    """A model name the loader would refuse before any download: a local folder without ``config.json``, or a
    path-like name (a suffix, or a path that is no hub id) with no folder there. Embedded and tiny names pass."""
    spec = str(spec)
    if spec in EMBEDDED or spec.startswith("tiny-"):
        return
    if Path(spec).expanduser().is_dir():
        folder = Path(spec).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise NeuronmapError(f"{folder}: not a Hugging Face model folder (no config.json)")
        return
    if Path(spec).suffix or os.sep in spec.rstrip("/") and not looks_like_hub_id(spec):
        raise NeuronmapError(f"'{spec}': no such model folder")


def looks_like_hub_id(spec: str) -> bool:
    """owner/name, as the hub names a model (not a relative or absolute path)."""
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))
