"""Neuron dashboards on the page, in a real browser (Debian's chromium through Playwright): the neuron panel
shows the generic flag with its rule, the output tokens of graph/neuron_logits.parquet, and the top-activating
examples with each token shaded in proportion to its activation and the example's position and target marked."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_explore_browser import Page, shown

from neuronmap.explore.data import load_view
from neuronmap.explore.page import write_page
from neuronmap.graph.api import map_run
from neuronmap.graph.meaning import GENERIC_RULE
from neuronmap.neurons import neurons_run
from neuronmap.rundir import read_parquet
from neuronmap.trace.runner import trace_run

DOCS = [
    "The Falklands are islands in the South Atlantic, far from the coast of Argentina.",
    "Hydrogen and oxygen make water, said the chemist to the class of students.",
    "The river runs north past the old mill and into the lake by the town <b>hall</b>.",
]


@pytest.fixture(scope="module")
def dashboard_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("dashboards")
    docs = root / "docs.txt"
    docs.write_text("".join(d + "\n" for d in DOCS))
    trace_run(out=root / "run", model="tiny-gpt2", contexts=str(docs), each_token=True, method="activation",
              min_prefix=3, top_k=6, progress=False)  # fmt: skip
    map_run(root / "run", null_samples=0, stability_seeds=1, progress=False)
    neurons_run(root / "run", examples=4, top_tokens=5, before=6, after=2)
    return root / "run"


def _open_first_neuron(p: Page) -> tuple[int, int]:
    p.click_cluster_on_map(0)
    p.page.locator("#nm-cluster tr.link").first.click()
    p.page.wait_for_selector("#nm-neuron-title")
    layer, neuron = re.search(r"L(\d+)/(\d+)", p.text("#nm-neuron-title")).groups()
    return int(layer), int(neuron)


def test_neuron_panel_shades_examples_and_lists_output_tokens(browser, dashboard_run: Path, tmp_path: Path):
    page = write_page(dashboard_run, tmp_path / "explorer.html")
    p = Page(browser, page)
    layer, neuron = _open_first_neuron(p)
    # The generic flag, with the map's rule.
    assert GENERIC_RULE in p.text("#nm-neuron-generic")
    # Output tokens: the promoted and suppressed tokens of neuron_logits.parquet, in order.
    logits = read_parquet(dashboard_run / "graph" / "neuron_logits.parquet")
    mine = logits[(logits["layer"] == layer) & (logits["neuron"] == neuron)]
    up = p.page.locator("#nm-neuron-logits .up .tok").all_inner_texts()
    down = p.page.locator("#nm-neuron-logits .down .tok").all_inner_texts()
    assert [u.rsplit(" ", 1)[0] for u in up] == [shown(t) for t in mine[mine["sign"] == 1]["token"]]
    assert [d.rsplit(" ", 1)[0] for d in down] == [shown(t) for t in mine[mine["sign"] == -1]["token"]]
    # Examples: as many as the table has, ranked; each token's background opacity is 0.85 |a| / top, clipped.
    table = read_parquet(dashboard_run / "graph" / "neuron_examples.parquet")
    table = table[(table["layer"] == layer) & (table["neuron"] == neuron)].sort_values("rank")
    rows = p.page.locator("#nm-neuron-examples .ex")
    assert rows.count() == len(table) == 4
    top = float(table["activation"].max())
    for i, row in enumerate(table.itertuples()):
        spans = rows.nth(i).locator(".t")
        assert spans.count() == len(row.tokens)
        styles = spans.evaluate_all(
            "els => els.map(e => [getComputedStyle(e).backgroundColor, +e.dataset.a, e.className])"
        )
        for (background, a, _), token_act in zip(styles, row.activations, strict=True):
            assert a == pytest.approx(token_act, rel=1e-3, abs=1e-6)
            alpha = float(re.match(r"rgba?\(\d+, \d+, \d+(?:, ([\d.]+))?\)", background).group(1) or 1)
            assert alpha == pytest.approx(0.85 * min(1.0, abs(token_act) / top), abs=4e-3)  # 8-bit alpha
            assert background.startswith(
                "rgba(255, 140, 0" if token_act >= 0 or alpha == 0 else "rgba(31, 119, 180"
            )
        classes = [c for _, _, c in styles]
        assert [i for i, c in enumerate(classes) if " at" in c] == [row.target_index]
        # its target: the next token underlined, or marked after the window's end
        if row.target_index + 1 < len(row.tokens):
            assert "target" in classes[row.target_index + 1]
            assert row.tokens[row.target_index + 1] == row.target
        else:
            assert rows.nth(i).locator("mark.target").inner_text() == row.target
        assert rows.nth(i).locator(".score").inner_text() == f"{row.activation:.3g}"
    # the strongest example's shading peaks at its own position
    first = np.asarray(table.iloc[0]["activations"])
    assert first[table.iloc[0]["target_index"]] == pytest.approx(top, rel=1e-5)
    # The two histograms: scores (contexts where it was kept) and activations (log scale).
    assert p.page.locator("#nm-neuron-hist .bars path").count() > 0
    assert p.page.locator("#nm-neuron-acthist .bars path").count() > 0
    p.page.screenshot(path=str(tmp_path / "neuron.png"), full_page=True)
    p.assert_clean()


def test_generic_flag_and_a_page_without_dashboards(browser, dashboard_run: Path, tmp_path: Path):
    view = load_view(dashboard_run)
    view.map.neurons["generic"] = True  # flag them all, as the map flags broad neurons
    p = Page(browser, write_page(dashboard_run, tmp_path / "generic.html", view=view))
    _open_first_neuron(p)
    assert p.text("#nm-neuron-generic").startswith("generic neuron (the map's rule: " + GENERIC_RULE)
    p.assert_clean()
    # An older run, without the neurons stage: the panel has no dashboard parts and no error.
    view.dashboards = None
    view.map.neurons["generic"] = False
    p = Page(browser, write_page(dashboard_run, tmp_path / "bare.html", view=view))
    _open_first_neuron(p)
    assert p.text("#nm-neuron-generic").startswith("not generic")
    assert p.page.locator("#nm-neuron-examples, #nm-neuron-logits, #nm-neuron-acthist").count() == 0
    p.assert_clean()
