"""The map stage: the neuron<->token graph of a trace, its projection onto neurons, communities,
clusterability, and the tokens that describe each community. Torch-free: it reads run directories only. Names are
imported on first use, so ``graph.config`` (the parameters' checks) loads without numpy, scipy or pandas.
"""

from __future__ import annotations

from neuronmap.lazy import lazy_exports

_LAZY = {
    "MapConfig": "neuronmap.graph.config",
    "MapResult": "neuronmap.graph.api",
    "map_run": "neuronmap.graph.api",
    "project": "neuronmap.graph.projection",
}
__all__ = ["MapConfig", "MapResult", "map_run", "project"]

__getattr__ = lazy_exports(__name__, _LAZY)
