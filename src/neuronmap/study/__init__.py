"""The editability study: which facts are easy to edit, against the shape of their representation.

Modules with one job each: ``facts`` (the fact set and rewrite requests), ``profiles`` (causal and neuron traces
at each subject token), ``shape`` (shape measures), ``editability`` (ROME scores, the flip-norm bisection),
``stats`` (Spearman, bootstrap, tests), ``conclusion`` and ``report`` (the written result), ``api``
(``study_editability`` and ``study_report``, what the CLI calls).
"""

from __future__ import annotations

from neuronmap.lazy import lazy_exports

__all__ = ["study_editability", "study_report"]
__getattr__ = lazy_exports(
    __name__, {"study_editability": "neuronmap.study.api", "study_report": "neuronmap.study.api"}
)
