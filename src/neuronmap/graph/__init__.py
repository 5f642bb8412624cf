"""The map stage: the neuron<->token graph of a trace, its projection onto neurons, communities,
clusterability, and the tokens that describe each community. Torch-free: it reads run directories only.
"""

from __future__ import annotations

from neuronmap.graph.api import MapConfig, MapResult, map_run
from neuronmap.graph.projection import project

__all__ = ["MapConfig", "MapResult", "map_run", "project"]
