"""The README's notebook walk-through, run as written on ``tiny-gpt2`` (its MODEL and RUN lines swapped): rows in,
labelled DataFrames out, and HTML summaries and an inline page that show the run."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
MODEL_LINE = 'MODEL = "smollm2-135m"'
RUN_LINE = 'RUN = "runs/notebook"'


def walkthrough() -> str:
    text = (ROOT / "README.md").read_text("utf-8")
    section = text[text.index("### Notebook API") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's Notebook API section has no python block"
    code = found[1]
    assert code.count(MODEL_LINE) == 1 and code.count(RUN_LINE) == 1, (
        "the walk-through's MODEL or RUN line changed"
    )
    return code


def test_the_readme_walkthrough_runs_and_shows_labelled_results(tmp_path):
    out = tmp_path / "notebook"
    code = walkthrough().replace(MODEL_LINE, 'MODEL = "tiny-gpt2"').replace(RUN_LINE, f"RUN = {str(out)!r}")
    ns: dict = {}
    exec(compile(code, "README.md (Notebook API)", "exec"), ns)

    facts, run = ns["facts"], ns["run"]
    assert run.path == out and run.stages == {"trace": "complete", "map": "complete"}
    contexts = ns["contexts"]
    assert isinstance(contexts, pd.DataFrame)
    assert contexts["text"].tolist() == [f["text"] for f in facts]
    assert contexts["relation"].tolist() == [f["relation"] for f in facts]

    shares = ns["shares"]
    assert isinstance(shares, pd.DataFrame)
    assert shares.index.name == "relation" and sorted(shares.index) == ["capital", "city"]
    assert shares.columns.name == "cluster"
    assert list(shares.columns) == sorted(run.clusters["cluster"])
    assert (shares.sum(axis=1).round(9) == 1).all()
    assert set(ns["leaning"].index) == {"capital", "city"} and set(ns["leaning"]) <= set(shares.columns)

    for result in (ns["traced"], ns["mapped"], run):
        markup = result._repr_html_()
        assert "tiny-gpt2" in markup and "trace: complete" in markup and html.escape(str(out)) in markup
        assert "8 of 8 contexts kept" in markup and "contexts in memory, sha256" in markup
        assert html.escape(facts[0]["text"]) in markup
    assert "clusterability" in run._repr_html_() and "relation (2 values)" in run._repr_html_()
    page = ns["page"]._repr_html_()
    assert page.startswith('<iframe srcdoc="&lt;!DOCTYPE html&gt;') and 'sandbox="allow-scripts' in page
