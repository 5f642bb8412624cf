"""`neuronmap map`: a thin shell over map_run; user mistakes exit 2 with one line on stderr."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from neuronmap.cli import app
from neuronmap.rundir import RunDir


def test_map_command_maps_and_prints_a_summary(planted_run):
    run, _ = planted_run()
    options = ["--null-samples", "2", "--stability-seeds", "1", "--export", "none", "--seed", "3"]
    result = CliRunner().invoke(app, ["map", str(run), *options])
    assert result.exit_code == 0, result.output
    assert "4 clusters" in result.output and "largest clusters" in result.output and "tok10" in result.output
    params = RunDir(run).stage("map")["params"]
    assert params["seed"] == 3 and params["export"] == [] and params["null_samples"] == 2
    again = CliRunner().invoke(app, ["map", str(run), *options])
    assert again.exit_code == 0 and "already mapped" in again.output
    swaps = CliRunner().invoke(app, ["map", str(run), *options, "--nulls", "swaps", "--force"])
    assert swaps.exit_code == 0, swaps.output
    assert "vs the swaps null" in swaps.output and "2 null networks" in swaps.output


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["{missing}"], "not a neuronmap run"),
        (["{run}", "--method", "kmeans"], "--method 'kmeans': expected one of leiden, louvain, spectral"),
        (["{run}", "--k-range", "9..3", "--method", "spectral"], "--k-range"),
        (["{run}", "--nulls", "swaps,bogus"], "--nulls 'bogus': expected one of edges, pairs, swaps"),
    ],
)
def test_bad_input_exits_2_with_one_line(planted_run, tmp_path, arguments, message):
    run, _ = planted_run()
    arguments = [a.format(run=run, missing=tmp_path / "missing") for a in arguments]
    done = subprocess.run(
        [sys.executable, "-c", "from neuronmap.cli import main; main()", "map", *arguments],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]


def test_map_command_says_what_the_map_knows(planted_run, tmp_path):
    import numpy as np
    import pandas as pd

    run, _ = planted_run()
    contexts = pd.read_parquet(run / "contexts.parquet")
    table = np.random.default_rng(0).normal(size=(1200, 16))
    for g, (_, ids) in enumerate(contexts.groupby("relation")["target_ids"]):
        centre = np.random.default_rng(g).normal(size=16) * 3
        for token in {int(t[0]) for t in ids}:
            table[token] = centre + np.random.default_rng(token).normal(size=16) * 0.2
    np.save(tmp_path / "emb.npy", table)
    options = ["--null-samples", "2", "--stability-seeds", "0", "--export", "none"]
    result = CliRunner().invoke(
        app, ["map", str(run), *options, "--embeddings", str(tmp_path / "emb.npy"), "--drop-generic"]
    )
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())
    assert "on the full projection" in out and "on the pruned graph that was clustered" in out
    assert "clusterability vs the swaps null" in out and "community method: leiden" in out
    assert "p cannot go below 1/3" in out
    found = re.search(r"coherent clusters .*?BH q <= 0.05\): (\d+) of 4 tested.*?holding ([\d.]+)% of", out)
    assert found and float(found.group(2)) == pytest.approx(
        25.0 * int(found.group(1))
    )  # 30 of 120 neurons each
    assert "group 'relation': AMI(dominant cluster, relation) 1.000" in out
    params = RunDir(run).stage("map")["params"]
    assert params["drop_generic"] is True and params["embeddings"] == str(tmp_path / "emb.npy")
