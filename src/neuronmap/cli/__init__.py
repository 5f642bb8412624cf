"""The ``neuronmap`` command: one sub-command per stage, each a thin shell over a Python function.

One module per stage or wing registers its commands on the shared ``app`` (``common``); the options several
commands share are declared once (``options``). User mistakes raise ``NeuronmapError``; ``main`` prints them as one
line on stderr and exits 2. Nothing here imports torch, transformers or pandas when the package loads: a command
checks its arguments (``trace.config``, ``verify.config``, ``neurons.config``, ``models.spec``) first, and
imports its stage only then.
"""

from __future__ import annotations

from importlib import import_module

from neuronmap.cli.common import app, main

# Each module registers its commands on app, in the order `neuronmap --help` lists them.
for _module in (
    "models",
    "trace",
    "map",
    "verify",
    "explore",
    "group",
    "neurons",
    "edit",
    "study",
    "outliers",
):
    import_module(f"neuronmap.cli.{_module}")

__all__ = ["app", "main"]
