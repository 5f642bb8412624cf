"""The causal check of a map's clusters (``neuronmap verify``): ablate a cluster's neurons and test whether the
log-probability of its own tokens falls more than that of the others, against random neuron sets of the same size
and layer profile. Above the trace and graph stages: it re-runs the traced model on the run's events and reads
the map's tables; ``stats`` is torch-free."""

from neuronmap.verify.api import VerifyConfig, VerifyResult, verify_clusters

__all__ = ["VerifyConfig", "VerifyResult", "verify_clusters"]
