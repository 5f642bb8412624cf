"""The mistakes in a model's name and dtype found without loading anything (no torch, no transformers): the
loader (``models.loader``) would report the same, seconds later, once its libraries are imported."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from neuronmap.errors import NeuronmapError
from neuronmap.models.registry import EMBEDDED

# The tiny random-weight test models (``models.tiny.TINY`` builds them; a test keeps the two lists equal).
TINY_NAMES = ("tiny-gpt2", "tiny-llama", "tiny-neox", "tiny-gemma", "tiny-bert")
# The dtypes a model loads in, as ``models.loader.DTYPES`` names them (same order).
DTYPE_NAMES = ("float32", "float64", "bfloat16", "float16")


def check_dtype(dtype: object) -> None:
    """``--dtype``: None (float32), a torch dtype, or one of :data:`DTYPE_NAMES`."""
    if isinstance(dtype, str) and dtype not in DTYPE_NAMES:
        raise NeuronmapError(f"unknown dtype '{dtype}'; choose one of {', '.join(DTYPE_NAMES)}")


def check_model(spec: str | os.PathLike[str]) -> None:
    """A model name the loader would refuse before any download: a local folder without ``config.json``, a
    path-like name (a suffix, or a path that is no hub id) with no folder there, or a hub name neither in the local
    hub cache nor reachable (about as long as a failed connection takes: 3 s at most, none with HF_HUB_OFFLINE).
    Embedded and tiny names pass."""
    spec = str(spec)
    if spec in EMBEDDED or spec in TINY_NAMES:
        return
    if Path(spec).expanduser().is_dir():
        folder = Path(spec).expanduser().resolve()
        if not (folder / "config.json").is_file():
            raise NeuronmapError(f"{folder}: not a Hugging Face model folder (no config.json)")
        return
    if Path(spec).suffix or os.sep in spec.rstrip("/") and not looks_like_hub_id(spec):
        raise NeuronmapError(f"'{spec}': no such model folder")
    if not _in_hub_cache(spec) and not hub_reachable():
        raise hub_error(spec, "not in the local hub cache, and the Hugging Face hub is not reachable")


def _in_hub_cache(spec: str) -> bool:
    from huggingface_hub import try_to_load_from_cache  # ~0.1 s; only for names that may be hub models

    try:
        return isinstance(try_to_load_from_cache(spec, "config.json"), str)
    except ValueError:  # not a valid repository id
        return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """A quick look before the hub client, whose retries take half a minute to fail offline."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def hub_error(spec: str, why: str) -> NeuronmapError:
    """The one error for a model name that is not embedded, not a folder, and that the hub did not give."""
    return NeuronmapError(
        f"could not load '{spec}': not an embedded model, not a local folder, and the Hugging Face hub gave no "
        f"model ({why}); offline, use an embedded model: {', '.join([*EMBEDDED, *TINY_NAMES])}"
    )


def looks_like_hub_id(spec: str) -> bool:
    """owner/name, as the hub names a model (not a relative or absolute path)."""
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not spec.startswith((".", "/", "~"))
