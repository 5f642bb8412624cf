"""``python -m bench.edit_sweep`` end to end on a tiny model, and its rule for the best row."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from bench.edit_sweep import best, parse_vary, table, variant_name, variants
from neuronmap.edit.hparams import MemitHparams, RomeHparams

ROOT = Path(__file__).resolve().parents[2]
CORPUS = "Paris is the capital of France.\nTokyo is the capital and most populous city of Japan.\n" * 4


def _entry(clamp: float, layer: int, score: float, nbhd: float, unedited_nbhd: float = 0.9) -> dict:
    edited = {"efficacy": 1.0, "paraphrase": 1.0, "neighborhood": nbhd, "score": score}
    return {"variant": {"clamp_norm_factor": clamp}, "layer": layer, "edited": edited,
            "unedited": {**edited, "neighborhood": unedited_nbhd}}  # fmt: skip


def test_the_best_row_keeps_the_neighbourhood_else_scores_highest():
    keeps, scores_more = _entry(1.0, 1, 0.80, 0.85), _entry(4.0, 1, 0.90, 0.50)
    assert best([scores_more, keeps]) is keeps  # within 10 points of unedited beats a higher score
    lost = [_entry(4.0, 1, 0.90, 0.50), _entry(4.0, 2, 0.70, 0.40)]
    assert best(lost) is lost[0]  # none keeps it: the highest score
    rows = table({"entries": [scores_more, keeps]}).splitlines()
    assert rows[0] == "| clamp norm factor | layer | efficacy | paraphrase | neighbourhood | score |"
    assert rows[3] == "| **1.0** | **1** | **100.0** | **100.0** | **85.0** | **80.0** |"


def test_vary_parses_values_and_combines_them_in_order():
    vary = parse_vary(["clamp_norm_factor=0.75,1.5", "early_stop_loss=0.1,0.5", "context_templates=rome"])
    assert vary["clamp_norm_factor"] == [0.75, 1.5] and vary["context_templates"] == ["rome"]
    assert [tuple(v.values()) for v in variants(vary)][:3] == [(0.75, 0.1, "rome"), (0.75, 0.5, "rome"),
                                                               (1.5, 0.1, "rome")]  # fmt: skip
    # lists, as MEMIT's layer ranges, stay whole; a name with a list has it comma-joined
    assert parse_vary(["layers=[1,2,3,4],[3,4]"]) == {"layers": [[1, 2, 3, 4], [3, 4]]}
    assert variant_name({"layers": [3, 4], "kl_factor": 0.5}) == "layers=3,4-kl_factor=0.5"
    with pytest.raises(SystemExit, match="FIELD=V1"):
        parse_vary(["clamp_norm_factor"])


def _stats(tmp_path: Path) -> dict:
    """Second-moment settings from a small corpus: seconds on a tiny model."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    return {"mom2_corpus": str(corpus), "mom2_n_tokens": 100, "mom2_max_length": 32}


def _sweep(tmp_path: Path, hp: RomeHparams | MemitHparams, *args: str) -> tuple[list[str], dict, Any]:
    """``python -m bench.edit_sweep`` on tiny-gpt2 from ``hp`` with ``args``: its command, environment and run."""
    (tmp_path / "hp.json").write_text(json.dumps(hp.to_dict()))
    command = [
        sys.executable, "-m", "bench.edit_sweep", "--model", "tiny-gpt2", "--hparams", str(tmp_path / "hp.json"),
        *args, "--offset", "0", "--runs", str(tmp_path / "runs"), "--threads", "1",
        "--result", str(tmp_path / "sweep.json"),
    ]  # fmt: skip
    env = {**os.environ, "NEURONMAP_CACHE": str(tmp_path / "cache")}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stderr
    return command, env, done


def test_sweep_on_a_tiny_model(tmp_path):
    hp = RomeHparams(layer=0, v_num_grad_steps=2, context_template_length_params=((3, 1),), mom2_ridge=1e-3,
                     **_stats(tmp_path))  # fmt: skip
    command, env, done = _sweep(
        tmp_path, hp, "--vary", "clamp_norm_factor=1.0,2.0", "--layers", "0,1", "--limit", "1"
    )
    result = tmp_path / "sweep.json"
    saved = json.loads(result.read_text())
    assert [(e["variant"]["clamp_norm_factor"], e["layer"]) for e in saved["entries"]] == [
        (1.0, 0), (1.0, 1), (2.0, 0), (2.0, 1)]  # fmt: skip
    written = json.loads((tmp_path / "runs" / "clamp_norm_factor=2.0" / "hparams.json").read_text())
    assert written["clamp_norm_factor"] == 2.0 and written["v_num_grad_steps"] == 2
    assert table(saved) in done.stdout and table(saved).count("**") == 2 * 6
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=900)
    assert again.returncode == 0 and all(
        e["run"]["reused"] for e in json.loads(result.read_text())["entries"]
    )
    # a sweep under way: --finished reports the variants done and runs none of the others
    wider = [a if a != "clamp_norm_factor=1.0,2.0" else "clamp_norm_factor=1.0,2.0,3.0" for a in command]
    partial = subprocess.run(
        [*wider, "--finished"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=900
    )
    reported = json.loads(result.read_text())
    assert partial.returncode == 0 and reported["unfinished"] == ["clamp_norm_factor=3.0"]

    def scored(entries: list[dict]) -> list[tuple]:
        return [(e["variant"], e["layer"], e["edited"]) for e in entries]

    assert scored(reported["entries"]) == scored(saved["entries"])
    assert not (tmp_path / "runs" / "clamp_norm_factor=3.0").exists()
    assert "unfinished: clamp_norm_factor=3.0" in partial.stdout


def test_memit_sweep_varies_lambda_and_the_layer_range(tmp_path):
    hp = MemitHparams(layers=(0, 1), v_num_grad_steps=2, context_template_length_params=((3, 1),),
                      **_stats(tmp_path))  # fmt: skip
    _sweep(tmp_path, hp, "--algorithm", "memit", "--vary", "layers=[0,1],[1]", "--vary", "mom2_update_weight=10",
           "--limit", "2")  # fmt: skip
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert saved["algorithm"] == "memit"
    assert saved["base_hparams"] == {"_source": str(tmp_path / "hp.json"), **hp.to_dict()}  # the file read
    assert [(e["variant"]["layers"], e["layer"]) for e in saved["entries"]] == [([0, 1], "0,1"), ([1], "1")]
    # the varied range shows once, as the range each run wrote
    assert (
        table(saved).splitlines()[0]
        == "| mom2 update weight | range | efficacy | paraphrase | neighbourhood | score |"
    )
    written = json.loads((tmp_path / "runs" / "layers=1-mom2_update_weight=10" / "hparams.json").read_text())
    assert written["layers"] == [1] and written["mom2_update_weight"] == 10
    rows = pd.read_parquet(
        tmp_path / "runs" / "layers=0,1-mom2_update_weight=10" / "eval" / "results.parquet"
    )
    assert set(rows["algorithm"]) == {"memit"} and set(rows["batch_size"]) == {2}  # both records at once
