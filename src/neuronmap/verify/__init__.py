"""The causal check of a map's clusters (``neuronmap verify``): ablate a cluster's neurons and test whether the
log-probability of its own tokens falls more than that of the others, against random neuron sets of the same size
and layer profile. Above the trace and graph stages: it re-runs the traced model on the run's events and reads
the map's tables; ``stats`` is torch-free. Names are imported on first use, so ``verify.config`` (the parameters'
checks) loads without numpy or pandas."""

from __future__ import annotations

from neuronmap.lazy import lazy_exports

_LAZY = {
    "VerifyConfig": "neuronmap.verify.config",
    "VerifyResult": "neuronmap.verify.api",
    "verify_clusters": "neuronmap.verify.api",
}
__all__ = sorted(_LAZY)

__getattr__ = lazy_exports(__name__, _LAZY)
