"""neuronmap: map what the MLP neurons of a transformer language model do.

The top-level names are imported lazily so that torch-free parts (``neuronmap.graph``, ``neuronmap.explore``)
do not pay for, or depend on, torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": "neuronmap.models.loader",
    "LoadedModel": "neuronmap.models.loader",
    "NeuronHook": "neuronmap.models.hooks",
    "Context": "neuronmap.contexts.record",
    "load_contexts": "neuronmap.contexts.loaders",
    "trace_run": "neuronmap.trace.runner",  # not "trace": that is the subpackage, which would shadow it
    "TraceConfig": "neuronmap.trace.runner",
    "RunDir": "neuronmap.trace.store",
    "map_run": "neuronmap.graph.api",
    "NeuronmapError": "neuronmap.errors",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'neuronmap' has no attribute {name!r}")
