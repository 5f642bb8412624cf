"""The editability study: which facts are easy to edit, against the shape of their representation.

Modules with one job each: ``facts`` (the fact set and rewrite requests), ``profiles`` (causal and neuron traces
at each subject token), ``shape`` (shape measures), ``editability`` (ROME scores, the flip-norm bisection),
``stats`` (Spearman, bootstrap, tests), ``conclusion`` and ``report`` (the written result), ``api``
(``study_editability``, what the CLI calls).
"""

from __future__ import annotations

from typing import Any

__all__ = ["study_editability"]


def __getattr__(name: str) -> Any:
    if name == "study_editability":
        from neuronmap.study.api import study_editability

        return study_editability
    raise AttributeError(f"module 'neuronmap.study' has no attribute {name!r}")
