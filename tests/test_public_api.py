"""The public names are what they say, whatever was imported before them: no name is shadowed by a module of the
same name (``neuronmap.trace`` is the trace package, its function ``neuronmap.trace_run``; the outlier wing's
``refine``, ``synthesize`` and ``evaluate`` live in ``refinement``, ``synthesis`` and ``evaluation``)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import importlib, pkgutil, types
import neuronmap
for info in pkgutil.walk_packages(neuronmap.__path__, "neuronmap."):
    if not info.name.endswith("__main__"):  # (that one runs the CLI)
        importlib.import_module(info.name)  # every module first: each becomes an attribute of its package
packages = [neuronmap] + [importlib.import_module(i.name) for i in pkgutil.walk_packages(neuronmap.__path__, "neuronmap.")
                          if i.ispkg]
for package in packages:
    for name in getattr(package, "__all__", []):
        value = getattr(package, name)
        assert not isinstance(value, types.ModuleType), f"{package.__name__}.{name} is a module"
for name in neuronmap.__all__:  # the top level offers functions and classes only
    assert name == "__version__" or callable(getattr(neuronmap, name)), f"neuronmap.{name} is not callable"
assert isinstance(neuronmap.trace, types.ModuleType) and callable(neuronmap.trace_run)
assert neuronmap.trace_run is importlib.import_module("neuronmap.trace.runner").trace_run
print("ok")
"""


def test_every_public_name_is_what_it_says_after_importing_every_subpackage():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
