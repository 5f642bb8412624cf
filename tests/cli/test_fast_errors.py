"""A mistake in a command's own arguments is reported before torch loads: about as fast as ``neuronmap --help``.

Each command checks its options, its input files and its run directory with torch-free code
(``trace.config``, ``graph.config``, ``verify.config``, ``neurons.config``, ``models.spec``, ``cli.options``) and
imports its stage only then. Checked two ways: each mistake, run as a user runs it (``python -m neuronmap``),
exits 2 with one line within max(1 s, 3 x the time of ``--help`` measured here), a ratio so that a busy machine
does not fail it; and all of them, run in one process, leave torch, transformers, numpy, scipy and pandas
unimported (``HEAVY``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

BAD_JSONL = '{"text": "a b", "target": "c"}\n{"text": "a b", "target": \n'
TRAIN = ["outliers", "train", "--data", "builtin:sentiment", "--out", "{d}/cls"]
# (id, arguments, a fragment of the one stderr line); {d} is the test's folder.
CASES = [
    ("trace-unknown-method", ["trace", "--out", "{d}/run", "--method", "magic"], "unknown method 'magic'"),
    ("trace-missing-contexts", ["trace", "--out", "{d}/run", "--contexts", "{d}/missing.jsonl"],
     "missing.jsonl: no such file"),
    ("trace-malformed-contexts", ["trace", "--out", "{d}/run", "--contexts", "{d}/bad.jsonl"],
     "bad.jsonl: line 2: malformed JSON"),
    ("trace-layers-not-integers", ["trace", "--out", "{d}/run", "--layers", "1,x"],
     "--layers takes comma-separated integers"),
    ("trace-bad-max-memory", ["trace", "--out", "{d}/run", "--max-memory", "lots"], "--max-memory takes a size"),
    ("trace-unknown-dtype", ["trace", "--out", "{d}/run", "--dtype", "float8"], "unknown dtype 'float8'"),
    ("trace-model-path-missing", ["trace", "--out", "{d}/run", "--model", "{d}/nope/model.bin"],
     "no such model folder"),
    ("trace-zero-threads", ["trace", "--out", "{d}/run", "--threads", "0"], "--threads must be at least 1"),
    ("trace-each-token-method", ["trace", "--out", "{d}/run", "--each-token", "--method", "causal"],
     "--each-token takes --method"),
    ("map-missing-run", ["map", "{d}/nope"], "not a neuronmap run (no run.json)"),
    ("map-unknown-method", ["map", "{d}/nope", "--method", "magic"], "--method 'magic': expected one of"),
    ("map-bad-k-range", ["map", "{d}/nope", "--k-range", "1..x"], "--k-range '1..x': expected LOW..HIGH"),
    ("explore-missing-run", ["explore", "{d}/nope"], "not a neuronmap run"),
    ("figures-missing-run", ["figures", "{d}/nope"], "not a neuronmap run"),
    ("group-missing-run", ["group", "{d}/nope", "--by", "pos"], "not a neuronmap run"),
    ("verify-bad-ablate", ["verify", "{d}/nope", "--ablate", "half"], "--ablate 'half': expected one of"),
    ("verify-missing-run", ["verify", "{d}/nope"], "not a neuronmap run"),
    ("neurons-zero-examples", ["neurons", "{d}/nope", "--examples", "0"], "--examples must be at least 1"),
    ("neurons-missing-run", ["neurons", "{d}/nope"], "not a neuronmap run"),
    ("causal-trace-bad-max-memory", ["causal-trace", "--out", "{d}/ct", "--max-memory", "lots"],
     "--max-memory takes a size"),
    ("causal-trace-unknown-dtype", ["causal-trace", "--out", "{d}/ct", "--dtype", "float8"], "unknown dtype"),
    ("stats-zero-threads", ["stats", "--threads", "0"], "--threads must be at least 1"),
    ("stats-unknown-algorithm", ["stats", "--algorithm", "pmet"], "unknown edit algorithm 'pmet'"),
    ("edit-bad-save-as", ["edit", "--subject", "Rome", "--prompt", "{{}} is in", "--target-new", "Paris",
                          "--save-as", "zip"], "--save-as takes delta or model"),
    ("edit-model-path-missing", ["edit", "--subject", "Rome", "--prompt", "{{}} is in", "--target-new", "Paris",
                                 "--model", "{d}/nope/model.bin"], "no such model folder"),
    ("edit-eval-bad-max-memory", ["edit-eval", "--out", "{d}/ev", "--max-memory", "lots"], "--max-memory takes"),
    ("study-unknown-dtype", ["study", "editability", "--out", "{d}/st", "--dtype", "float8"], "unknown dtype"),
    ("outliers-zero-threads", [*TRAIN, "--threads", "0"], "--threads must be at least 1"),
    ("models-prepare-unknown", ["models", "--prepare", "no-such-model"], "unknown embedded model"),
    ("trace-hub-model-offline", ["trace", "--out", "{d}/run", "--model", "nobody/no-such-model"],
     "not in the local hub cache, and the Hugging Face hub is not reachable"),
    ("trace-unknown-tiny", ["trace", "--out", "{d}/run", "--model", "tiny-nothing"], "not in the local hub cache"),
    ("trace-unknown-grouping", ["trace", "--out", "{d}/run", "--group-by", "colour"], "groupings are pos and/or sense"),
    ("group-unknown-grouping", ["group", "{d}/nope", "--by", "colour"], "groupings are pos and/or sense"),
    ("group-bad-silhouette", ["group", "{d}/nope", "--by", "sense", "--min-silhouette", "2"],
     "--min-silhouette must lie in [-1, 1]"),
    ("figures-bad-format", ["figures", "{d}/nope", "--format", "png,jpeg"], "--format takes png, svg"),
    ("figures-format-none", ["figures", "{d}/nope", "--format", "none"], "give png, svg or both"),
    ("study-unknown-keep", ["study", "editability", "--out", "{d}/st", "--keep", "most"], "--keep takes known"),
    ("study-bad-flip-mode", ["study", "editability", "--out", "{d}/st", "--flip-mode", "x"], "--flip-mode takes"),
    ("study-missing-facts", ["study", "editability", "--out", "{d}/st", "--facts", "{d}/none.json"],
     "none.json: no such file"),
    ("study-bad-format", ["study", "editability", "--out", "{d}/st", "--format", "gif"], "--format takes png, svg"),
]  # fmt: skip
HEAVY = ("torch", "transformers", "numpy", "scipy", "pandas")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fast")
    (d / "bad.jsonl").write_text(BAD_JSONL)
    return d


def _env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1"}


def _timed(args: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "neuronmap", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=_env())  # fmt: skip
    return proc, time.perf_counter() - start


@pytest.fixture(scope="module")
def help_seconds(folder: Path) -> float:
    """``neuronmap --help``: the cost of starting Python, typer and the CLI (the best of three)."""
    times = []
    for _ in range(3):
        proc, seconds = _timed(["--help"], folder)
        assert proc.returncode == 0 and "trace" in proc.stdout, proc.stderr
        times.append(seconds)
    return min(times)


@pytest.mark.parametrize(("args", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_mistake_is_one_line_about_as_fast_as_help(folder, help_seconds, args, message):
    args = [a.format(d=folder) for a in args]
    limit = max(1.0, 3 * help_seconds)
    best = None
    for _ in range(2):  # the better of two: one slow start on a busy machine is not the command's cost
        proc, seconds = _timed(args, folder)
        assert proc.returncode == 2, proc.stderr
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
        best = seconds if best is None else min(best, seconds)
        if best < limit:
            break
    assert best < limit, f"{best:.2f} s for the error, --help {help_seconds:.2f} s (limit {limit:.2f} s)"


DRIVER = """
import contextlib, io, json, sys
from neuronmap.cli import main
cases = json.loads(sys.argv[1])
for args in cases:
    sys.argv = ["neuronmap", *args]
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            main()
        except SystemExit as exc:
            assert exc.code == 2, (args, exc.code)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {heavy})))
"""


def test_no_mistake_imports_a_heavy_library(folder):
    cases = [[a.format(d=folder) for a in args] for _, args, _ in CASES]
    driver = DRIVER.replace("{heavy}", repr(set(HEAVY)))
    proc = subprocess.run([sys.executable, "-c", driver, json.dumps(cases)], capture_output=True, text=True,
                          timeout=300, cwd=folder, env=_env())  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_the_readme_counts_these_mistakes():
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert f"`tests/cli/test_fast_errors.py` runs {len(CASES)} such mistakes" in readme
