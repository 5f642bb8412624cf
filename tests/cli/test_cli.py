"""The CLI as a user runs it: exit codes, one-line errors, no partial output."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

NEURONMAP = [sys.executable, "-m", "neuronmap"]


def run(*args, **kw):
    return subprocess.run([*NEURONMAP, *args], capture_output=True, text=True, timeout=300, **kw)


def test_trace_runs_and_prints_summary(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": "The sky is", "target": "blue"}) + "\n")
    proc = run(
        "trace",
        "--model",
        "tiny-gpt2",
        "--contexts",
        str(path),
        "--out",
        str(tmp_path / "run"),
        "--top-k",
        "5",
    )
    assert proc.returncode == 0, proc.stderr
    assert "1 of 1 contexts kept" in proc.stdout and "top neurons" in proc.stdout
    assert (tmp_path / "run" / "scores.parquet").is_file()
    again = run(
        "trace",
        "--model",
        "tiny-gpt2",
        "--contexts",
        str(path),
        "--out",
        str(tmp_path / "run"),
        "--top-k",
        "5",
    )
    assert again.returncode == 0 and "already complete" in again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--contexts", "missing.jsonl"], "missing.jsonl"),
        (["--method", "magic"], "unknown method 'magic'"),
        (["--model", "no-such-model"], "could not load 'no-such-model'"),
        (["--layers", "1,x"], "--layers takes comma-separated integers"),
        (["--layers", "9"], "layer 9 out of range"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(tmp_path, args, message):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": "The sky is", "target": "blue"}) + "\n")
    base = ["--model", "tiny-gpt2", "--contexts", str(path), "--out", str(tmp_path / "run")]
    proc = run("trace", *base, *args, cwd=tmp_path, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin"})
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "scores.parquet").exists()


def test_models_command_lists_embedded_one_row_a_line_when_piped():
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    proc = run("models", env=env)
    assert proc.returncode == 0
    assert "smollm2-135m" in proc.stdout and "minilm-l6" in proc.stdout
    # piped, the table keeps its width: a model's row is one line that grep can find
    row = next(line for line in proc.stdout.splitlines() if "smollm2-135m" in line)
    assert "causal-lm" in row and "(default)" in row
