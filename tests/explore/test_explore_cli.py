"""`neuronmap explore`, `figures`: thin shells that print what they wrote; mistakes exit 2 with one line."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from neuronmap.cli import app


def test_explore_prints_the_page_and_a_summary(run_copy):
    result = CliRunner().invoke(app, ["explore", str(run_copy)])
    assert result.exit_code == 0, result.output
    assert f"page: {run_copy / 'explorer.html'}" in result.output
    assert "4 clusters" in result.output and "clusterability (swaps null): all layers: p =" in result.output
    assert (
        result.output.count(" bits): ") == 3
        and "context groups: relation (4 values), pos (2 values)" in result.output
    )
    assert (run_copy / "explorer.html").is_file() and not (run_copy / "figures").exists()


def test_figures_command_writes_the_chosen_format(run_copy, tmp_path):
    result = CliRunner().invoke(
        app, ["figures", str(run_copy), "--format", "svg", "--out", str(tmp_path / "f")]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.suffix for p in (tmp_path / "f").iterdir()) == [".svg"] * 6


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["explore", "{missing}"], "not a neuronmap run"),
        (["figures", "{run}", "--format", "bmp"], "--format takes png, svg"),
        (["explore", "{unmapped}"], "has no map yet"),
        (["group", "{run}", "--by", "color"], "groupings are pos and/or sense"),
    ],
)
def test_mistakes_exit_2_with_one_line(run_copy, tmp_path, arguments, message):
    unmapped = tmp_path / "unmapped"
    unmapped.mkdir()
    for name in ("run.json", "contexts.parquet", "scores.parquet"):
        (unmapped / name).write_bytes((run_copy / name).read_bytes())
    text = (unmapped / "run.json").read_text()
    (unmapped / "run.json").write_text(text.replace('"map"', '"old_map"'))
    arguments = [a.format(run=run_copy, missing=tmp_path / "missing", unmapped=unmapped) for a in arguments]
    done = subprocess.run(
        [sys.executable, "-c", "from neuronmap.cli import main; main()", *arguments],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
