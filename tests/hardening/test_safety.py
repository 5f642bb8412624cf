"""Safety of what neuronmap loads and where it writes.

- No pickle from user files: the sources hold no ``pickle``/``joblib``/``dill`` loads, no ``np.load`` with pickles
  allowed, and every ``torch.load`` passes ``weights_only=True``; a model folder whose checkpoint is a pickle with
  a payload is refused with one line, and the payload never runs.
- Names taken from user data (class labels, group columns) become file names inside the chosen output folder,
  never paths out of it. The page server's path traversal is tested in tests/explore/test_explore_serve.py.
"""

from __future__ import annotations

import ast
import csv
import os
import pickle
import re
from pathlib import Path

import pytest
from hardening_helpers import run_cli, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SRC = Path(__file__).resolve().parents[2] / "src" / "neuronmap"
PICKLE_LOADS = re.compile(
    r"\b(pickle|cPickle|dill|cloudpickle|joblib|_pickle)\s*\.\s*(load|loads|Unpickler)\b|\bread_pickle\s*\("
)


def _sources() -> list[Path]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 50
    return files


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    """Calls spelled ``MODULE.FUNC`` for ``name`` = "MODULE.FUNC" (``torch.load``, ``np.load``)."""
    module, func = name.rsplit(".", 1)
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == func
        and ast.unparse(node.func.value).split(".")[-1] == module
    ]


def _keyword(call: ast.Call, name: str) -> str | None:
    for kw in call.keywords:
        if kw.arg == name:
            return ast.unparse(kw.value)
    return None


def test_no_pickle_loads_in_the_sources() -> None:
    offenders = []
    for path in _sources():
        text = path.read_text()
        tree = ast.parse(text)
        rel = path.relative_to(SRC)
        for number, line in enumerate(text.splitlines(), 1):
            if PICKLE_LOADS.search(line.split("#")[0]):
                offenders.append(f"{rel}:{number}: {line.strip()}")
        for call in _calls(tree, "torch.load"):
            if _keyword(call, "weights_only") != "True":
                offenders.append(f"{rel}:{call.lineno}: torch.load without weights_only=True")
        for call in _calls(tree, "np.load") + _calls(tree, "numpy.load"):
            if _keyword(call, "allow_pickle") not in (None, "False"):
                offenders.append(f"{rel}:{call.lineno}: np.load with allow_pickle")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.keyword)
                and node.arg == "trust_remote_code"
                and ast.unparse(node.value) != "False"
            ):
                offenders.append(f"{rel}:{node.value.lineno}: trust_remote_code")
    assert not offenders, "\n".join(offenders)


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The scanner itself: each forbidden spelling is caught."""
    bad = "import torch, pickle\nx = torch.load(p)\ny = torch.load(p, weights_only=False)\nz = pickle.loads(b)\n"
    tree = ast.parse(bad)
    assert len(_calls(tree, "torch.load")) == 2
    assert all(_keyword(c, "weights_only") != "True" for c in _calls(tree, "torch.load"))
    assert PICKLE_LOADS.search("z = pickle.loads(b)") and PICKLE_LOADS.search("joblib.load(f)")
    assert not PICKLE_LOADS.search("except pickle.UnpicklingError as exc:")


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_a_pickled_checkpoint_with_a_payload_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from neuronmap.models.tiny import build_tiny

    monkeypatch.setenv("NEURONMAP_CACHE", str(tmp_path / "cache"))
    folder, marker = tmp_path / "evil-model", tmp_path / "PAYLOAD-RAN"
    model, tokenizer = build_tiny("tiny-gpt2")
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    with open(folder / "pytorch_model.bin", "wb") as fh:
        pickle.dump({"weight": _Payload(marker)}, fh)
    for args in (["trace", "--out", tmp_path / "out", "--contexts", "builtin:facts", "--limit", "1"],
                 ["stats", "--layer", "0"]):  # fmt: skip
        result = run_cli([args[0], "--model", folder, *args[1:], "--threads", "1"])
        assert result.code == 2 and result.err.count("\n") == 1, result.err
        assert "refused to load pickled weights" in result.err
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_a_pickled_edit_file_is_not_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Edits are safetensors only: a pickle passed to --apply is refused, its payload never runs."""
    monkeypatch.setenv("NEURONMAP_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "PAYLOAD-RAN"
    evil = tmp_path / "edit.safetensors"
    evil.write_bytes(pickle.dumps({"left": _Payload(marker)}))
    result = run_cli(["edit", "--model", "tiny-gpt2", "--subject", "Rome", "--prompt", "{} is in",
                      "--target-new", "Paris", "--apply", evil, "--threads", "1"])  # fmt: skip
    assert result.code == 2 and "not a neuronmap edit" in result.err and result.err.count("\n") == 1
    assert not marker.exists()


# ---- names from user data ------------------------------------------------------------------------------------
HOSTILE = ["../up", "../../../../tmp/escape", "/etc/passwd", "..", ".", "a/../../b", "~", "C:\\x", "\x00", ""]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.one_of(st.sampled_from(HOSTILE), st.text(max_size=30)))
def test_names_from_data_stay_in_their_folder(name: str) -> None:
    from neuronmap.explore.figures import _safe_name
    from neuronmap.outliers.synthesis import _slug

    folder = Path("/run/folder")
    for made in (_slug(name), _safe_name(name)):
        assert (
            made and "/" not in made and "\\" not in made and made not in (".", "..") and "\x00" not in made
        )
        assert (folder / made).parent == folder


def test_synthesize_keeps_a_hostile_class_inside_the_model_folder(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A classifier trained on labels that look like paths: its synthesis folders stay inside MODEL/synthesis."""
    monkeypatch.setenv("NEURONMAP_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data.csv"
    labels = {"../../../escaped": "cat dog horse cow", "/tmp/absolute": "saw drill axe rake"}
    with open(data, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        for i in range(15):
            for label, words in labels.items():
                writer.writerow([f"{words} {i}", label])
    model = tmp_path / "area" / "cls"
    result = run_cli(["outliers", "train", "--data", data, "--out", model, "--encoder", "tiny-bert", "--epochs",
                      "2", "--hidden", "8", "--threads", "1"])  # fmt: skip
    assert result.code == 0, result.err
    outside = snapshot(tmp_path / "area")
    for label in labels:
        result = run_cli(["outliers", "synthesize", "--model", model, "--class", label, "--quantiles", "0.5",
                          "--n", "3", "--boundary", "0", "--no-figure", "--threads", "1"])  # fmt: skip
        assert result.code == 0, result.err
    made = {k for k in snapshot(tmp_path / "area").keys() - outside.keys()}
    assert made and all(k == "cls/synthesis" or k.startswith("cls/synthesis/") for k in made), made
    assert not Path("/tmp/absolute").exists() or not (Path("/tmp/absolute") / "synthetic.parquet").exists()


def test_force_deletes_only_a_runs_own_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`trace --force` into a folder that is not a run leaves the user's files of the same names alone."""
    monkeypatch.setenv("NEURONMAP_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "mine"
    (folder / "figures").mkdir(parents=True)
    (folder / "figures" / "poster.png").write_bytes(b"not ours")
    (folder / "explorer.html").write_text("<p>mine</p>")
    contexts = tmp_path / "c.jsonl"
    contexts.write_text('{"text": "The capital of France is", "target": "Paris"}\n')
    result = run_cli(["trace", "--model", "tiny-gpt2", "--contexts", contexts, "--out", folder, "--keep", "all",
                      "--force", "--threads", "1"])  # fmt: skip
    assert result.code == 0, result.err
    assert (folder / "figures" / "poster.png").read_bytes() == b"not ours"
    assert (folder / "explorer.html").read_text() == "<p>mine</p>"
