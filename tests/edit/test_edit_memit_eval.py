"""MEMIT from the command line and in ``edit-eval``: the same result files as ROME's (plus how records were
grouped), weights restored, saved deltas re-applied, and user mistakes answered in one line with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from neuronmap.edit.dsets import LITE, load_records
from neuronmap.edit.experiments.evaluate import evaluate

GROUPING = {"algorithm", "layers", "batch", "batch_size"}


@pytest.fixture
def memit_small(memit_hparams):
    """The shared MEMIT test hparams on layer 0 alone, with MEMIT's own clamp."""
    return memit_hparams.replace(layers=(0,), clamp_norm_factor=0.75)


@pytest.fixture
def memit_file(tmp_path, memit_small):
    path = tmp_path / "memit.json"
    path.write_text(json.dumps(memit_small.to_dict()))
    return path


def test_evaluate_memit_in_batches_restores_the_weights(fresh, memit_small, small_hparams):
    lm = fresh("tiny-gpt2")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    records = load_records(LITE, limit=3)
    ev = evaluate(lm, records, memit_small, batch=2, gen_length=8, progress=False)
    assert all(torch.equal(v, before[k]) for k, v in lm.model.state_dict().items())
    rome = evaluate(lm, records, small_hparams.replace(layer=0), gen_length=8, progress=False)
    assert set(ev.results.columns) == set(rome.results.columns) | GROUPING
    assert ev.results["batch"].tolist() == [0, 0, 1] and ev.results["batch_size"].tolist() == [2, 2, 1]
    assert set(ev.results["layers"]) == {"0"} and set(ev.results["algorithm"]) == {"memit"}
    # the unedited model is scored alike, whatever the algorithm
    pd.testing.assert_frame_equal(ev.results[["case_id", "p_new_pre", "fluency_pre"]],
                                  rome.results[["case_id", "p_new_pre", "fluency_pre"]])  # fmt: skip
    assert set(ev.summary) == set(rome.summary) | {"algorithm", "batch", "memit"}
    assert ev.summary["algorithm"] == "memit" and ev.summary["batch"] == 2 and ev.summary["layers"] == [0]
    assert [d["records"] for d in ev.summary["memit"]] == [2, 1]
    assert "algorithm" not in rome.summary and not GROUPING & set(rome.results.columns)


def test_evaluate_memit_without_statistics(fresh, memit_small):
    lm = fresh("tiny-llama")
    ev = evaluate(lm, load_records(LITE, limit=2), memit_small.replace(mom2_adjustment=False), batch=2,
                  with_fluency=False, progress=False)  # fmt: skip
    assert len(ev.results) == 2 and ev.summary["stats_tokens"] == {}


def test_rome_in_batches_edits_one_after_another_and_restores(fresh, small_hparams):
    lm = fresh("tiny-llama")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    records = load_records(LITE, limit=3)
    ev = evaluate(lm, records, small_hparams.replace(layer=0), batch=3, with_fluency=False, progress=False)
    assert all(torch.equal(v, before[k]) for k, v in lm.model.state_dict().items())
    alone = evaluate(lm, records, small_hparams.replace(layer=0), with_fluency=False, progress=False)
    assert ev.results["batch"].tolist() == [0, 0, 0] and set(ev.results["algorithm"]) == {"rome"}
    # the first record's edit is computed on the original weights in both; the later ones are not
    assert ev.results["delta_norm"].iloc[0] == pytest.approx(alone.results["delta_norm"].iloc[0], rel=1e-12)
    assert ev.results["delta_norm"].iloc[2] != pytest.approx(alone.results["delta_norm"].iloc[2], rel=1e-9)


def test_cli_memit_edit_save_apply_and_eval(run, tmp_path, memit_file, hparams_file):
    delta = tmp_path / "memit.safetensors"
    proc = run(
        "edit", "--model", "tiny-gpt2", "--algorithm", "memit", "--hparams", str(memit_file),
        "--prompt", "{} is located in the city of", "--subject", "Eiffel Tower", "--target-new", "Rome",
        "--target-true", "Paris", "--save", str(delta),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "edited layers 0 with MEMIT" in proc.stdout and "p('Rome')" in proc.stdout and delta.is_file()
    again = run(
        "edit", "--model", "tiny-gpt2", "--algorithm", "memit", "--hparams", str(memit_file),
        "--prompt", "{} is located in the city of", "--subject", "Eiffel Tower", "--target-new", "Rome",
        "--target-true", "Paris",
    )  # fmt: skip
    assert again.returncode == 0 and "steps (the target found in the cache)" in again.stdout
    proc = run(
        "edit", "--model", "tiny-gpt2", "--hparams", str(hparams_file), "--apply", str(delta),
        "--prompt", "{} is the capital of", "--subject", "Tokyo", "--target-new", "France",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "edited layer 1" in proc.stdout  # ROME, on the model MEMIT edited
    out, printed = {}, {}
    for name, args in (("memit", ["--algorithm", "memit", "--hparams", str(memit_file), "--batch", "2"]),
                       ("rome", ["--hparams", str(hparams_file), "--layer", "0"])):  # fmt: skip
        out[name] = tmp_path / name
        proc = run(
            "edit-eval",
            "--model",
            "tiny-gpt2",
            *args,
            "--limit",
            "3",
            "--no-fluency",
            "--out",
            str(out[name]),
        )
        assert proc.returncode == 0, proc.stderr
        printed[name] = proc.stdout
    assert "2 edited together" in printed["memit"] and "layers" in printed["memit"]
    memit_rows, rome_rows = (pd.read_parquet(out[n] / "results.parquet") for n in ("memit", "rome"))
    assert set(memit_rows.columns) == set(rome_rows.columns) | GROUPING and len(memit_rows) == 3
    memit_summary, rome_summary = (
        json.loads((out[n] / "summary.json").read_text()) for n in ("memit", "rome")
    )
    assert set(memit_summary) == set(rome_summary) | {"algorithm", "batch", "memit"}
    assert memit_summary["by_layer"].keys() == {"0"} and memit_summary["batch"] == 2
    params = {n: json.loads((out[n] / "run.json").read_text())["stages"]["edit_eval"]["params"] for n in out}
    assert params["memit"]["algorithm"] == "memit" and params["memit"]["batch"] == 2
    assert "algorithm" not in params["rome"] and "batch" not in params["rome"]  # ROME's record as before


EDIT = ["edit", "--prompt", "{} is in", "--subject", "Eiffel Tower", "--target-new", "Rome"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*EDIT, "--algorithm", "pmet"], "unknown edit algorithm 'pmet' (choose rome or memit)"),
        ([*EDIT, "--layers", "0,1"], "ROME edits one layer, got [0, 1]"),
        ([*EDIT, "--layers", "0,x"], "--layers takes comma-separated integers"),
        ([*EDIT, "--algorithm", "memit", "--layers", "1,0"], "MEMIT's layers must increase"),
        ([*EDIT, "--algorithm", "memit", "--layers", "0,5"], "layer 5 out of range"),
        ([*EDIT, "--algorithm", "memit", "--hparams", "gpt5"], "no MEMIT hparams named 'gpt5'"),
        (["edit-eval", "--out", "x", "--batch", "0"], "--batch must be at least 1 (got 0)"),
        (["edit-eval", "--out", "x", "--algorithm", "memit", "--batch", "-2"], "--batch must be at least 1"),
        (["edit-eval", "--out", "x", "--batch", "two"], "Invalid value for '--batch'"),
        (["edit-eval", "--out", "x", "--algorithm", "MEMIT"], "unknown edit algorithm 'MEMIT'"),
    ],
)
def test_user_mistakes_exit_2_with_one_line(run, args, message):
    proc = run(*args[:1], "--model", "tiny-gpt2", *args[1:])
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_mistakes_in_the_new_options_are_found_before_torch_loads():
    """As every command's own options (tests/cli/test_fast_errors.py): no heavy library imported."""
    code = """
import sys
from neuronmap.cli import main
for args in (["edit", "--prompt", "{} is", "--subject", "A", "--target-new", "B", "--algorithm", "x"],
             ["edit", "--prompt", "{} is", "--subject", "A", "--target-new", "B", "--layers", "1,2"],
             ["edit-eval", "--out", "x", "--batch", "0"], ["edit-eval", "--out", "x", "--algorithm", "x"]):
    sys.argv = ["neuronmap", *args]
    try:
        main()
    except SystemExit as exc:
        assert exc.code == 2, args
print([m for m in ("torch", "transformers", "numpy", "pandas") if m in sys.modules])
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]" and done.stderr.count("error:") == 4
