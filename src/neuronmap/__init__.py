"""neuronmap: map what the MLP neurons of a transformer language model do.

The top-level names are imported lazily so that torch-free parts (``neuronmap.graph``, ``neuronmap.explore``)
do not pay for, or depend on, torch.
"""

from __future__ import annotations

from neuronmap.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "load_model": "neuronmap.models.loader",
    "LoadedModel": "neuronmap.models.loader",
    "NeuronHook": "neuronmap.models.hooks",
    "Context": "neuronmap.contexts.record",
    "load_contexts": "neuronmap.contexts.loaders",
    "trace_run": "neuronmap.trace.runner",  # not "trace": that is the subpackage, which would shadow it
    "TraceConfig": "neuronmap.trace.config",
    "RunDir": "neuronmap.rundir",
    "map_run": "neuronmap.graph.api",
    "verify_clusters": "neuronmap.verify.api",
    "open_run": "neuronmap.notebook",
    "Run": "neuronmap.notebook",
    "NeuronmapError": "neuronmap.errors",
}

__all__ = ["__version__", *_LAZY]

__getattr__ = lazy_exports(__name__, _LAZY)
