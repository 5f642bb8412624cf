"""``python -m bench.memit_counterfact`` runs end to end on a tiny model and writes its result file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from bench.edit_runs import scores
from bench.memit_counterfact import rome_table
from neuronmap.edit.hparams import MemitHparams, RomeHparams

ROOT = Path(__file__).resolve().parents[2]
CORPUS = "Paris is the capital of France.\nTokyo is the capital and most populous city of Japan.\n" * 4


def test_memit_counterfact_on_a_tiny_model(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    stats = {"mom2_corpus": str(corpus), "mom2_n_tokens": 100, "mom2_max_length": 32}
    memit = MemitHparams(layers=(0,), v_num_grad_steps=2, context_template_length_params=((3, 1),), **stats)
    rome = RomeHparams(layer=0, v_num_grad_steps=2, context_template_length_params=((3, 1),), mom2_ridge=1e-3,
                       **stats)  # fmt: skip
    for name, hp in (("memit", memit), ("rome", rome)):
        (tmp_path / f"{name}.json").write_text(json.dumps(hp.to_dict()))
    result = tmp_path / "result.json"
    command = [
        sys.executable, "-m", "bench.memit_counterfact", "--model", "tiny-gpt2", "--sizes", "2",
        "--rome", "alone,sequential", "--memit-hparams", str(tmp_path / "memit.json"),
        "--rome-hparams", str(tmp_path / "rome.json"), "--runs", str(tmp_path / "runs"), "--threads", "1",
        "--result", str(result), "--chunk", "1",
    ]  # fmt: skip
    env = {**os.environ, "NEURONMAP_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    entries = json.loads(result.read_text())["entries"]
    assert [e["records"] for e in entries] == [2]
    (two,) = entries
    for method in ("unedited", "memit", "rome_alone", "rome_sequential"):
        assert {"efficacy", "paraphrase", "neighborhood", "score"} <= set(two[method])
    assert "| 2 | memit |" in done.stdout
    # ROME alone ran in chunks of one record (which sizes would share)
    assert sorted(p.name for p in (tmp_path / "runs" / "rome-alone").iterdir()) == ["0", "1"]
    assert [c["reused"] for c in two["rome_alone_run"]["chunks"]] == [False, False]
    # the breakdowns: chunks of one record average to the size's scores, relations count every record
    first = scores(pd.read_parquet(tmp_path / "runs" / "rome-alone" / "0" / "results.parquet"), "edited")
    assert [c["offset"] for c in two["rome_alone_chunks"]] == [0, 1]
    for metric in ("efficacy", "neighborhood", "neighborhood_magnitude"):
        chunks = [c["edited"][metric] for c in two["rome_alone_chunks"]]
        assert abs(sum(chunks) / 2 - two["rome_alone"][metric]) < 1e-9
        assert two["rome_alone_chunks"][0]["edited"][metric] == first[metric]
    for method in ("memit", "rome_alone"):
        assert sum(r["records"] for r in two[f"{method}_relations"].values()) == 2
    assert json.loads(result.read_text())["memit_settings"]["layers"] == [0]
    table = rome_table(json.loads(result.read_text()), 2)
    assert "| tiny-gpt2, ROME at layer 0, clamp 4 | 2 |" in table and table.endswith("| not measured |")
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    (rerun,) = json.loads(result.read_text())["entries"]
    assert again.returncode == 0 and rerun["memit_run"]["reused"]
    # a run read back keeps the time it recorded
    assert rerun["memit_run"]["seconds"] == json.loads((tmp_path / "runs" / "memit-2" / "summary.json").read_text())[
        "timing"]["seconds"] > 0  # fmt: skip
