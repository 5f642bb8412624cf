"""The notebook API on a mapped run (``neuronmap.open_run``): labelled tables, the group matrix as a DataFrame, the
HTML summaries of a run and of each stage's result (hostile text escaped), and the page inline in a sandboxed
iframe, which a real browser renders with nothing of the run's text executed."""

from __future__ import annotations

import html
import re

import numpy as np
import pandas as pd
import pytest
from explore_fixtures import SCRIPT_END, XSS

import neuronmap
from neuronmap.errors import NeuronmapError
from neuronmap.explore import explore, load_view
from neuronmap.explore.page import build_payload, render_page
from neuronmap.graph.api import MapResult
from neuronmap.notebook import InlineHTML, Run, open_run
from neuronmap.rundir import RunDir
from neuronmap.trace.runner import TraceResult


@pytest.fixture(scope="module")
def run(mapped_run) -> Run:
    return neuronmap.open_run(mapped_run)


def assert_escaped(markup: str) -> None:
    """No tag or attribute of the run's text survives: the hostile strings appear only escaped."""
    assert "<img" not in markup and "<script" not in markup and "</script" not in markup
    assert "onerror" not in markup or "&lt;img src=x onerror=" in markup


def test_the_tables_are_labelled_dataframes(run, mapped_run):
    assert neuronmap.Run is Run and run.path == mapped_run
    assert run.stages == {"trace": "complete", "map": "complete"}
    assert run.model["n_layers"] == 3
    for table in (run.contexts, run.scores, run.clusters, run.neurons):
        assert isinstance(table, pd.DataFrame) and len(table)
    assert {"text", "target", "relation"} <= set(run.contexts.columns)
    assert run.summary["counts"]["clusters"] == run.map.summary["counts"]["clusters"]
    assert "relation" in run.groups and XSS in run.groups["relation"]


@pytest.mark.parametrize("partition", ["cluster", "merged"])
def test_the_group_matrix_is_the_views_array_with_its_labels(run, mapped_run, partition):
    view = load_view(mapped_run)
    frame = run.group_matrix("relation", partition)
    array = view.group_matrix(partition, "relation")
    assert np.array_equal(frame.to_numpy(), array)
    assert frame.index.name == "relation" and list(frame.index) == view.groups["relation"]
    assert frame.columns.name == partition and list(frame.columns) == list(
        range(view.partitions[partition].n)
    )
    assert np.allclose(frame.sum(axis=1), 1.0)
    assert view.group_frame(partition, "relation").equals(frame)
    # relation r_g is carried by the cluster of group g: each row leans on a cluster of its own
    if partition == "cluster":
        assert frame.idxmax(axis=1).is_unique


def test_a_wrong_group_or_partition_is_a_one_line_error(run):
    with pytest.raises(NeuronmapError, match="'title' is not a context group \\(groups: relation, pos\\)"):
        run.group_matrix("title")
    with pytest.raises(NeuronmapError, match="partition must be one of cluster, merged"):
        run.group_matrix("relation", "layers")


def test_the_summary_html_shows_the_run_and_escapes_its_text(run, mapped_run):
    markup = run._repr_html_()
    for piece in ("neuronmap run", "model", "stages", "trace: complete", "map: complete", "clusterability",
                  "p = ", "swaps null", "relation", "largest clusters", "first contexts"):  # fmt: skip
        assert piece in markup, piece
    assert html.escape(XSS) in markup  # the first context's text, as text
    assert html.escape(repr(SCRIPT_END.strip())) not in markup or "&lt;/script&gt;" in markup
    assert_escaped(markup)


def test_each_stage_result_shows_the_same_summary(run_copy):
    traced = TraceResult(RunDir(run_copy), {})
    mapped = MapResult.load(run_copy)
    explored = explore(run_copy)
    for result, title in (
        (traced, "neuronmap trace"),
        (mapped, "neuronmap map"),
        (explored, "neuronmap explore"),
    ):
        markup = result._repr_html_()
        assert title in markup and html.escape(XSS) in markup and "clusterability" in markup
        assert_escaped(markup)
        assert open_run(result).path == run_copy
    assert "explorer.html</code>" in explored._repr_html_()


def test_open_run_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(NeuronmapError, match="not a neuronmap run"):
        open_run(tmp_path)
    with pytest.raises(NeuronmapError, match="open_run takes a run directory or a stage's result"):
        open_run(5)


def test_a_run_without_a_map_says_so(run_copy):
    rd = RunDir(run_copy)
    manifest = rd.manifest()
    del manifest["stages"]["map"]
    rd.write_manifest(manifest)
    traced = open_run(run_copy)
    assert "map" not in traced.stages and traced.summary == {}  # a synthetic trace has no summary
    with pytest.raises(NeuronmapError, match="has no map yet"):
        _ = traced.clusters
    assert "clusterability" not in traced._repr_html_()


def test_the_page_shows_inline_as_a_sandboxed_srcdoc(run, mapped_run):
    page = run.page()
    assert isinstance(page, InlineHTML)
    markup = page._repr_html_()
    found = re.fullmatch(
        r'<iframe srcdoc="([^"]*)" title="[^"]*" sandbox="allow-scripts allow-downloads" [^>]*></iframe>',
        markup,
    )
    assert found, markup[:300]
    srcdoc = found[1]
    assert (
        "<" not in srcdoc and ">" not in srcdoc and '"' not in srcdoc
    )  # nothing of it can leave the attribute
    assert html.unescape(srcdoc) == render_page(build_payload(load_view(mapped_run)))
    assert "allow-same-origin" not in markup  # its scripts run in an origin of their own


def test_the_page_can_be_written_too(run_copy):
    path = open_run(run_copy).page(inline=False)
    assert path == run_copy / "explorer.html" and path.is_file()


def test_a_browser_renders_the_inline_page_and_runs_nothing_of_the_runs_text(browser, run, tmp_path):
    notebook = tmp_path / "notebook.html"
    notebook.write_text(
        f"<!DOCTYPE html><html><body>{run._repr_html_()}{run.page(height=600)._repr_html_()}</body></html>",
        encoding="utf-8",
    )
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors, dialogs = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        page.goto(notebook.as_uri())
        page.wait_for_function("document.querySelector('iframe') !== null")
        frame = next(f for f in page.frames if f is not page.main_frame)
        frame.wait_for_selector("body[data-ready='1']", timeout=60_000)
        assert frame.locator("#nm-map .point").count() > 0  # the cluster map is drawn
        assert XSS in page.inner_text("body")  # the summary shows the hostile text as text
        assert page.locator("img").count() == 0 and frame.locator("img").count() == 0
        assert page.evaluate("window.__pwned") is None and frame.evaluate("window.__pwned") is None
        assert errors == [] and dialogs == []
    finally:
        page.close()
