"""Lazy exports for a package's ``__init__``: a name's module is imported when the name is first used.

So that ``import neuronmap.outliers`` (or ``neuronmap`` itself) costs nothing, and torch-free parts never import
torch through a package's names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from importlib import import_module
from typing import Any


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package`` that serves ``names`` (name -> the module defining it)."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
