"""The explore stage: an interactive page and static figures for a mapped run.

It reads run directories only: it never loads a model and does not import torch.
"""

from __future__ import annotations

from neuronmap.explore.api import ExploreResult, explore
from neuronmap.explore.data import RunView, load_view
from neuronmap.explore.figures import write_figures
from neuronmap.explore.page import build_payload, write_page
from neuronmap.explore.serve import make_server

__all__ = [
    "ExploreResult",
    "RunView",
    "build_payload",
    "explore",
    "load_view",
    "make_server",
    "write_figures",
    "write_page",
]
