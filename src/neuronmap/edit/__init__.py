"""The edit wing: locate facts (causal tracing) and rewrite them (ROME, and MEMIT for many at once), with
CounterFact-style evaluation.

Split as ROME's code is: data sets (``dsets``), the algorithms (``rome``, ``memit``), experiments
(``experiments``); the hyper-parameters are JSON files under ``hparams/`` (MEMIT's in ``hparams/memit/``), one per
model family. Names are imported lazily.
"""

from __future__ import annotations

from neuronmap.lazy import lazy_exports

_LAZY = {
    "rome": "neuronmap.edit.algorithm.edit",
    "Edit": "neuronmap.edit.algorithm.edit",
    "save_model": "neuronmap.edit.algorithm.edit",
    "load_edit": "neuronmap.edit.algorithm.edit",  # a saved delta of either algorithm
    "memit": "neuronmap.edit.algorithm.memit",
    "MemitEdit": "neuronmap.edit.algorithm.memit_edit",
    "MemitHparams": "neuronmap.edit.hparams",
    "load_memit_hparams": "neuronmap.edit.hparams",
    "Request": "neuronmap.edit.algorithm.request",
    "RomeHparams": "neuronmap.edit.hparams",
    "load_hparams": "neuronmap.edit.hparams",
    "second_moment": "neuronmap.edit.stats",
    "second_moments": "neuronmap.edit.stats",
    "SecondMoment": "neuronmap.edit.stats",
    "trace_fact": "neuronmap.edit.experiments.causal_trace",
    "run_causal_trace": "neuronmap.edit.api",  # what `neuronmap causal-trace` calls (several facts, a run)
    "run_eval": "neuronmap.edit.api",  # what `neuronmap edit-eval` calls
    "run_edit": "neuronmap.edit.api",  # what `neuronmap edit` calls
    "evaluate": "neuronmap.edit.experiments.evaluate",
    "load_records": "neuronmap.edit.dsets",
}

__all__ = list(_LAZY)

__getattr__ = lazy_exports(__name__, _LAZY)
