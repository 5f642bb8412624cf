"""Neuron dashboards: output-token weights, top-activating examples and activation histograms of the mapped
neurons (``neuronmap neurons RUN``). Needs the model, so it sits above the torch-free map stage; its names
(``neurons.names``) import nothing, and the rest is imported on first use, so the page can read the tables
without torch."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "NeuronsConfig": "config",
    "NeuronsResult": "api",
    "neurons_run": "api",
    "ActivationHistogram": "examples",
    "Text": "examples",
    "TopActivations": "examples",
    "top_activating": "examples",
    "norm_map": "logits",
    "output_token_weights": "logits",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"neuronmap.neurons.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'neuronmap.neurons' has no attribute {name!r}")
