"""The import order of the packages: each layer imports only the layers below it (and itself).

Every import in src/neuronmap counts, also one inside a function or under ``TYPE_CHECKING``: a lazy import is
still a dependency. ``rundir`` is the ground floor (the run directory every stage reads and writes), with the
small helpers every layer shares.
"""

from __future__ import annotations

import ast
from pathlib import Path

import neuronmap

SRC = Path(neuronmap.__file__).parent
LAYERS: list[set[str]] = [
    {
        "",
        "errors",
        "formats",
        "lazy",
        "progress",
        "quiet",
        "raytools",
        "rundir",
        "textfile",
    },  # "": neuronmap/__init__
    {"models"},
    {"contexts"},
    {"trace"},
    {"graph", "edit", "outliers", "neurons", "verify"},  # side by side: none imports another
    {"explore", "study"},
    {"notebook"},  # runs in a notebook: reads what explore shows
    {"cli"},
    {"__main__"},
]
# Imports against the order that stay for now, with why. Any other is a new violation.
KNOWN: dict[tuple[str, str], str] = {}


def _level(name: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if name in layer)


def imports() -> list[tuple[str, str, str, str]]:
    """(importing module, imported module, importer's layer name, imported layer name) for every import.

    A layer name is a module's subpackage, or its own name for a top-level module ("" for neuronmap itself).
    """
    found = []
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        module = ".".join(("neuronmap", *parts)).removesuffix(".__init__")
        mine = parts[0] if parts != ("__init__",) else ""
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert not node.level, f"{module}: a relative import (this check reads absolute ones)"
                targets = [node.module or ""]
            else:
                continue
            for target in targets:
                if target == "neuronmap" or target.startswith("neuronmap."):
                    found.append((module, target, mine, target.split(".")[1] if "." in target else ""))
    return found


def test_every_package_has_a_layer():
    names = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    names |= {p.stem for p in SRC.glob("*.py") if p.name != "__init__.py"}
    assert names <= set().union(*LAYERS), names - set().union(*LAYERS)


def test_no_module_imports_a_layer_above_or_beside_its_own():
    wrong = []
    for module, target, mine, theirs in imports():
        if mine == theirs or (mine, theirs) in KNOWN:
            continue
        low, high = _level(theirs), _level(mine)
        if low > high or (low == high and low > 0):
            wrong.append(f"{module} imports {target} ({mine} -> {theirs})")
    assert not wrong, "\n".join(wrong)


def test_the_known_exceptions_still_exist():
    """An exception that was fixed leaves the list, so it cannot come back unnoticed."""
    seen = {(mine, theirs) for _, _, mine, theirs in imports()}
    assert set(KNOWN) <= seen, set(KNOWN) - seen


def test_the_check_sees_a_violation():
    """The parser finds imports inside functions and under TYPE_CHECKING (the lazy ones are dependencies too)."""
    found = {(module, target) for module, target, _, _ in imports()}
    assert ("neuronmap.contexts.grouping", "neuronmap.models.loader") in found  # under TYPE_CHECKING
    assert ("neuronmap.trace.runner", "neuronmap.trace.ray_backend") in found  # inside a function


def test_the_trace_runner_and_its_ray_backend_do_not_import_each_other():
    """The Ray backend scores any picklable job; the Ray helpers it shares with the map are in raytools."""
    found = {(module, target) for module, target, _, _ in imports()}
    assert ("neuronmap.trace.ray_backend", "neuronmap.trace.runner") not in found
    assert ("neuronmap.graph.ray_blocks", "neuronmap.raytools") in found


def test_graph_and_explore_are_free_of_torch():
    """The map and the page read tables: their modules import torch nowhere, and the neuronmap modules they
    import do not import it when loaded (a function of theirs that graph never calls may)."""

    def torch_imports(path: Path, loaded_only: bool) -> bool:
        tree = ast.parse(path.read_text("utf-8"))
        for node in tree.body if loaded_only else ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "torch" or n.startswith("torch.") for n in names):
                return True
        return False

    own = [p for pkg in ("graph", "explore") for p in (SRC / pkg).rglob("*.py")]
    assert not [str(p) for p in own if torch_imports(p, loaded_only=False)]
    below = {target.removeprefix("neuronmap.").replace(".", "/") for _, target, mine, _ in imports()
             if mine in ("graph", "explore")}  # fmt: skip
    files = [SRC / f"{t}.py" for t in below] + [SRC / t / "__init__.py" for t in below]
    assert not [str(f) for f in files if f.is_file() and torch_imports(f, loaded_only=True)]
