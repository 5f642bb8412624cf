"""End to end on the tiny encoder and a small synthetic corpus: train (with VOS), synthesize, evaluate, refine."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from neuronmap.cli import app
from neuronmap.errors import NeuronmapError
from neuronmap.outliers.classifier import Classifier

FAST = ["--encoder", "tiny-bert", "--epochs", "15", "--batch-size", "32", "--lr", "0.01", "--hidden", "32"]


def invoke(*args):
    result = CliRunner().invoke(app, ["outliers", *map(str, args)])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_csv):
    out = tmp_path_factory.mktemp("cls") / "cls"
    args = ["--data", synthetic_csv, "--out", out, "--holdout", "weather", "--vos", "--start-epoch", "5"]
    output = invoke("train", *args, *FAST, "--sample-from", "1000", "--seed", "1")
    return out, output


def test_train_writes_a_reloadable_classifier(trained, synthetic_csv):
    out, output = trained
    assert "3 classes" in output and "with VOS" in output and "near OOD" in output
    clf = Classifier.load(out)
    assert clf.classes == ["animals", "food", "tools"] and clf.config["vos"] is True
    split = pd.read_parquet(out / "split.parquet")
    assert set(split["split"]) == {"train", "val", "test", "holdout"}
    assert (split.loc[split["label"] == "weather", "split"] == "holdout").all()
    assert clf.info["summary"]["test_accuracy"] > 0.5
    assert any(h["virtual_outliers"] > 0 for h in clf.info["history"])
    # same command, same seed: identical weights; an existing folder is refused without --force
    again = out.parent / "again"
    invoke("train", "--data", synthetic_csv, "--out", again, "--holdout", "weather", "--vos", "--start-epoch", "5",
           *FAST, "--sample-from", "1000", "--seed", "1")  # fmt: skip
    assert (again / "head.safetensors").read_bytes() == (out / "head.safetensors").read_bytes()
    result = CliRunner().invoke(app, ["outliers", "train", "--data", str(synthetic_csv), "--out", str(out)])
    assert "already holds a classifier" in str(result.exception)


def test_synthesize_table_nearest_texts_and_figure(trained, tmp_path):
    model, _ = trained
    out = tmp_path / "syn"
    output = invoke("synthesize", "--model", model, "--class", "animals", "--quantiles", "0.5,0.01",
                    "--radii", "1,3", "--n", "8", "--neighbours", "3", "--out", out, "--seed", "2")  # fmt: skip
    assert "synthetic 'animals' activations" in output
    table = pd.read_parquet(out / "synthetic.parquet")
    assert len(table) == 8 * 5 and set(table["mode"]) == {"quantile", "radius", "boundary"}
    for column in ("log_likelihood", "mahalanobis", "energy", "p_class", "logit:animals", "p:tools"):
        assert column in table
    probs = table[[c for c in table if c.startswith("p:")]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-6)
    radius = table[table["mode"] == "radius"]
    np.testing.assert_allclose(radius["mahalanobis"], radius["level"], rtol=1e-6)
    quant = table[table["mode"] == "quantile"].groupby("level")["log_likelihood"].mean()
    assert quant[0.01] < quant[0.5]
    boundary = table[table["mode"] == "boundary"]
    np.testing.assert_allclose(boundary["margin"], 0.0, atol=1e-4)
    records = [json.loads(line) for line in (out / "nearest.jsonl").read_text().splitlines()]
    assert len(records) == len(table) and len(records[0]["neighbours"]) == 3
    distances = [n["distance"] for n in records[0]["neighbours"]]
    assert distances == sorted(distances)
    assert (out / "synthesis.png").stat().st_size > 1000
    # deterministic with a seed
    invoke("synthesize", "--model", model, "--class", "animals", "--quantiles", "0.5,0.01", "--radii", "1,3",
           "--n", "8", "--neighbours", "3", "--out", tmp_path / "syn2", "--seed", "2", "--no-figure")  # fmt: skip
    pd.testing.assert_frame_equal(table, pd.read_parquet(tmp_path / "syn2" / "synthetic.parquet"))


def test_synthesize_with_a_pool_file_and_a_mixture(trained, tmp_path):
    model, _ = trained
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["cat dog", "saw drill", "rain snow"]))
    invoke("synthesize", "--model", model, "--class", "tools", "--quantiles", "0.1", "--n", "4",
           "--generative", "gmm", "--components", "2", "--pool", pool, "--out", tmp_path / "s", "--no-figure")  # fmt: skip
    records = [json.loads(line) for line in (tmp_path / "s" / "nearest.jsonl").read_text().splitlines()]
    assert {n["text"] for r in records for n in r["neighbours"]} <= {"cat dog", "saw drill", "rain snow"}
    assert records[0]["neighbours"][0]["label"] is None


def test_evaluate_writes_per_seed_and_aggregated_metrics(synthetic_csv, tmp_path):
    far = tmp_path / "far.csv"
    far.write_text("text\n" + "\n".join(f"completely different words number {i}" for i in range(30)) + "\n")
    output = invoke("evaluate", "--data", synthetic_csv, "--holdout", "weather", "--far", far, "--seeds", "0,1",
                    "--out", tmp_path / "ev", *FAST, "--start-epoch", "5", "--sample-from", "500")  # fmt: skip
    assert "| vos |" in output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert set(metrics["runs"]) == {"baseline", "vos"} and set(metrics["runs"]["vos"]) == {"0", "1"}
    run = metrics["runs"]["baseline"]["0"]
    assert set(run["ood"]) == {"near", "far"} and set(run["ood"]["far"]) == {"energy", "msp"}
    agg = metrics["aggregate"]["vos"]["ood"]["near"]["energy"]["auroc"]
    values = [metrics["runs"]["vos"][s]["ood"]["near"]["energy"]["auroc"] for s in ("0", "1")]
    assert agg["mean"] == pytest.approx(np.mean(values)) and agg["std"] == pytest.approx(
        np.std(values, ddof=1)
    )
    assert metrics["sizes"]["far"] == 30 and 0 <= metrics["aggregate"]["baseline"]["accuracy"]["mean"] <= 1


def test_refine_compares_strategies(synthetic_csv, tmp_path):
    output = invoke("refine", "--data", synthetic_csv, "--initial", "24", "--budget", "12", "--rounds", "2",
                    "--seeds", "0,1", "--out", tmp_path / "rf", *FAST)  # fmt: skip
    assert "boundary" in output and "uncertainty" in output
    result = json.loads((tmp_path / "rf" / "refine.json").read_text())
    for strategy in ("boundary", "random", "uncertainty"):
        rounds = result["runs"]["0"][strategy]
        assert [r["labelled"] for r in rounds] == [36, 48]
        assert 0 <= rounds[-1]["hard_accuracy"] <= 1
    picked = [json.loads(line) for line in (tmp_path / "rf" / "picked.jsonl").read_text().splitlines()]
    boundary = [p["text"] for p in picked if p["strategy"] == "boundary"]
    assert len(boundary) == 24 and len(set(boundary)) == 24  # distinct texts, never picked twice


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text,label\na,x\nb,x\nc,x\n", "has one class ('x')"),
        ("text,category\na,x\n", "line 1: the header has no 'label' column"),
        ("text,label\na,x\n ,y\n", "line 3: empty text"),
    ],
)
def test_bad_data_is_a_user_error(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    result = CliRunner().invoke(app, ["outliers", "train", "--data", str(path), "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, NeuronmapError)
    assert message in str(result.exception) and "bad.csv" in str(result.exception)
    assert not (tmp_path / "o").exists()


def test_bad_data_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("text,label\na,x\nb,x\n")
    proc = subprocess.run(
        [sys.executable, "-m", "neuronmap", "outliers", "train", "--data", str(path), "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "bad.csv: column 'label' has one class ('x')" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
