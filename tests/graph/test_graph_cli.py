"""`neuronmap map`: a thin shell over map_run; user mistakes exit 2 with one line on stderr."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from neuronmap.cli import app
from neuronmap.trace.store import RunDir


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


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["{missing}"], "not a neuronmap run"),
        (["{run}", "--method", "kmeans"], "--method 'kmeans': expected one of leiden, louvain, spectral"),
        (["{run}", "--k-range", "9..3", "--method", "spectral"], "--k-range"),
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
