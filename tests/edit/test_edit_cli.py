"""The edit commands as a user runs them: outputs written, one-line errors with exit code 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

NEURONMAP = [sys.executable, "-m", "neuronmap"]


def test_causal_trace_one_prompt(run, tmp_path):
    out = tmp_path / "ct"
    subjects = tmp_path / "subjects.jsonl"
    subjects.write_text(
        "".join(
            json.dumps({"text": f"{s} is in", "target": "x", "subject": s}) + "\n"
            for s in ("Rome", "Big Ben")
        )
    )
    proc = run(
        "causal-trace", "--model", "tiny-gpt2", "--prompt", "The {} is located in the city of",
        "--subject", "Eiffel Tower", "--target", "Paris", "--samples", "2", "--window", "2", "--out", str(out),
        "--noise-facts", str(subjects),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    table = pd.read_parquet(out / "causal_trace.parquet")
    assert set(table.columns) >= {"layer", "position", "kind", "effect", "indirect"}
    assert set(table["kind"]) == {"hidden", "mlp", "attn"}
    assert (out / "figures" / "fact_0.png").is_file() and (out / "figures" / "fact_0.svg").is_file()
    facts = pd.read_parquet(out / "facts.parquet")
    assert facts["p_clean"].iloc[0] > 0 and "strongest at layer" in proc.stdout


def test_causal_trace_set_writes_the_average(run, tmp_path):
    out = tmp_path / "set"
    proc = run(
        "causal-trace", "--model", "tiny-llama", "--facts", "builtin:facts", "--limit", "3", "--keep", "all",
        "--kind", "hidden", "--samples", "2", "--format", "png", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    avg = pd.read_parquet(out / "causal_trace_average.parquet")
    assert "last subject token" in set(avg["position_class"]) and (out / "figures" / "average.png").is_file()
    assert pd.read_parquet(out / "causal_trace.parquet")["fact_id"].nunique() == 3
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["stages"]["causal_trace"]["status"] == "complete"


def test_stats_then_cached(run, corpus_file):
    args = [
        "stats",
        "--model",
        "tiny-llama",
        "--layer",
        "0,1",
        "--corpus",
        str(corpus_file),
        "--tokens",
        "60",
    ]
    first = run(*args)
    assert first.returncode == 0, first.stderr
    assert "layer 1: 60 tokens" in first.stdout and "computed" in first.stdout
    second = run(*args)
    assert second.returncode == 0 and second.stdout.count("(cached)") == 2


def test_stats_takes_the_hparams_layers(run, corpus_file, tmp_path):
    """Without --layer, the layers are those the hparams edit: MEMIT's range in one run, ROME's one layer."""
    memit = tmp_path / "memit.json"
    memit.write_text(json.dumps({"layers": [0, 1], "mom2_n_tokens": 40, "mom2_corpus": str(corpus_file)}))
    proc = run("stats", "--model", "tiny-llama", "--algorithm", "memit", "--hparams", str(memit))
    assert proc.returncode == 0, proc.stderr
    assert "layer 0: 40 tokens" in proc.stdout and "layer 1: 40 tokens" in proc.stdout
    rome = run("stats", "--model", "tiny-llama", "--corpus", str(corpus_file), "--tokens", "40")
    assert rome.returncode == 0 and rome.stdout.count("layer ") == 1 and "layer 0: 40 tokens" in rome.stdout


def test_edit_save_apply_and_eval(run, tmp_path, hparams_file):
    delta = tmp_path / "e.safetensors"
    common = ["--model", "tiny-gpt2", "--hparams", str(hparams_file)]
    proc = run(
        "edit", *common, "--prompt", "{} is located in the city of", "--subject", "Eiffel Tower",
        "--target-new", "Rome", "--target-true", "Paris", "--save", str(delta),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "edited layer 1" in proc.stdout and "p('Rome')" in proc.stdout and delta.is_file()
    model_dir = tmp_path / "model"
    proc = run(
        "edit", *common, "--apply", str(delta), "--prompt", "{} is the capital of", "--subject", "Tokyo",
        "--target-new", "France", "--save", str(model_dir), "--save-as", "model",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads((model_dir / "neuronmap_edits.json").read_text())["edits"]) == 2
    out = tmp_path / "eval"
    proc = run("edit-eval", *common, "--limit", "2", "--no-fluency", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == 2 and set(summary["efficacy"]) == {"edited", "unedited"}
    assert len(pd.read_parquet(out / "results.parquet")) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "edit",
                "--prompt",
                "The Eiffel Tower is in",
                "--subject",
                "Eiffel Tower",
                "--target-new",
                "Rome",
            ],
            "has no '{}'",
        ),
        (
            ["edit", "--prompt", "{} is in", "--subject", "Eiffel Tower", "--target-new", "", "--layer", "1"],
            "new target is empty",
        ),
        (
            [
                "edit",
                "--prompt",
                "{} is in",
                "--subject",
                "Eiffel Tower",
                "--target-new",
                "Rome",
                "--layer",
                "7",
            ],
            "layer 7 out of range",
        ),
        (["causal-trace", "--out", "x", "--prompt", "{} is"], "--prompt needs --subject"),
        (
            ["causal-trace", "--out", "x", "--prompt", "{} is", "--subject", "Rome", "--kind", "resid"],
            "--kind",
        ),
        (["edit-eval", "--out", "x", "--facts", "builtin:facts"], "no rewrite requests"),
        (["stats", "--corpus", "missing.txt"], "no such corpus file"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(run, tmp_path, args, message):
    proc = run(*args[:1], "--model", "tiny-gpt2", *args[1:])
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_console_script_exit_code(tmp_path):
    """One real process: the installed entry point turns a bad request into exit code 2 and one line."""
    env = {**os.environ, "NEURONMAP_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    args = ["edit", "--model", "tiny-gpt2", "--prompt", "{} is", "--subject", "Rome", "--target-new", "Rome",
            "--target-true", "Rome"]  # fmt: skip
    proc = subprocess.run([*NEURONMAP, *args], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2 and "is the true target" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
