"""A page that reads at any size (issue 16, point 3), in a real browser (Debian's chromium through Playwright):
labelled map marks coloured by mean layer, heatmaps that page with an "others" column when clusters are many
(2,000), whole targets for multi-token targets, exact token search with a substring option, deep links, CSV
export of a cluster's neurons and contexts, p(target) in the context lists with a filter, token bars ranked by a
stated rule, and the causal-trace axis labelled with the traced layers."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from explore_fixtures import make_mapped_run, synthetic_trace, write_large_map, write_run
from test_explore_browser import Page, shown

from neuronmap.explore.data import load_view
from neuronmap.explore.page import LIFT_CAP, _ranked_tokens, build_payload, write_page
from neuronmap.graph.api import map_run
from neuronmap.rundir import RunDir, atomic_write_parquet

# token id -> (first token, the whole targets it starts): group 2's are " the" and " theologian" (one token
# each); group 3's " y" starts "yen" and "yuan", " rub" starts "ruble".
RENAMED = {
    1008: (" the", ["the"]),
    1009: (" theologian", ["theologian"]),
    1012: (" y", ["yen", "yuan"]),
    1013: (" rub", ["ruble"]),
}


@pytest.fixture(scope="module")
def words_run(tmp_path_factory) -> Path:
    """The synthetic run with some targets renamed: multi-token targets linked to their first token, and a
    `known` column that is true where p(target) > 0.5."""
    contexts, scores = synthetic_trace()
    seen: dict[int, int] = {}
    for i, ids in enumerate(contexts["target_ids"]):
        first = int(ids[0])
        if first in RENAMED:
            token, words = RENAMED[first]
            word = words[seen.get(first, 0) % len(words)]
            seen[first] = seen.get(first, 0) + 1
            multi = word.strip() != token.strip()
            contexts.at[i, "target"] = word
            contexts.at[i, "target_tokens"] = [token, word[len(token.strip()) :]] if multi else [token]
            contexts.at[i, "target_ids"] = [first, 5000] if multi else [first]
    contexts["known"] = contexts["p_target"] > 0.5
    path = tmp_path_factory.mktemp("words") / "run"
    write_run(path, contexts, scores, 3, 24)
    map_run(path, null_samples=0, stability_seeds=1, export="none", seed=0)
    return path


@pytest.fixture(scope="module")
def words_page(words_run, tmp_path_factory) -> tuple[Path, dict]:
    view = load_view(words_run)
    path = write_page(words_run, tmp_path_factory.mktemp("wpage") / "explorer.html", view=view)
    return path, build_payload(view)


def _cluster_of_token(payload: dict, token: str) -> int:
    col = payload["tokens"].index(token)
    return next(c for c, rows in enumerate(payload["partitions"]["cluster"]["tokens"]) if rows[0][0] == col)


def test_token_bars_rank_typical_tokens_first():
    """share x min(lift, 10): a token rare in the cluster (lift 0.03) sinks below a merely common one (lift
    0.6), and a rare one with a high lift (share 0.1%) below both typical ones, where the map's KL term
    share x log2(lift) ranks the rare ones higher."""
    # one neuron per cluster; tokens A, D, B (rare, high lift), C (lift far below 1)
    matrix = sp.csr_array(np.array([[60.0, 30.0, 0.1, 1.0], [40.0, 300.0, 0.0, 200.0]]))
    part = SimpleNamespace(profiles=matrix, labels=np.array([0, 1]))
    ranked = _ranked_tokens(SimpleNamespace(matrix=matrix), part)
    mine = ranked["cluster"] == 0
    assert ranked["token"][mine].tolist() == [0, 1, 2, 3]  # A, D, B, C
    lift, share = ranked["lift"][mine], ranked["share"][mine]
    assert lift[1] < 1 and lift[2] > 5 and lift[3] < 0.05 and share[2] < 0.002
    rule = share * np.minimum(lift, LIFT_CAP)
    assert (np.diff(rule) < 0).all()
    kl = share * np.log2(lift)
    assert kl[3] > kl[1] and kl[2] > kl[1]  # the map's own score would put C and B above D


def test_whole_targets_search_and_p_filter(browser, words_page):
    path, payload = words_page
    cols = {token: payload["tokens"].index(token) for token, _ in RENAMED.values()}
    assert payload["words"][str(cols[" y"])] in (["yen", "yuan"], ["yuan", "yen"])
    assert payload["words"][str(cols[" rub"])] == ["ruble"]
    assert str(cols[" the"]) not in payload["words"]  # a target that is its token needs no word
    p = Page(browser, path)
    # Whole words beside their first token, in the cluster's bars and its map label.
    cluster = _cluster_of_token(payload, " y")
    p.page.evaluate("c => { location.hash = 'cluster=' + c; }", cluster)
    p.page.wait_for_function(
        "c => document.querySelector('#nm-cluster-title')?.textContent.startsWith('#' + c + ' ')", arg=cluster
    )
    ticks = p.page.evaluate("document.getElementById('nm-cluster-tokens').layout.yaxis.ticktext")
    assert any(t.startswith(shown(" y") + " → ") and "yen" in t and "yuan" in t for t in ticks)
    labels = p.page.evaluate("document.getElementById('nm-map').data[0].text")
    assert any("yen" in t or "yuan" in t for t in labels)
    # Exact search: " the" is not " theologian"; with the substring box, it is found; a whole word finds its token.
    p.search(" the")
    results = p.page.locator("#nm-results .result > .tok").all_inner_texts()
    assert results == [shown(" the")]
    p.search(" the", substring=True)
    results = p.page.locator("#nm-results .result > .tok").all_inner_texts()
    assert results[0] == shown(" the") and shown(" theologian") in results
    p.search("ruble")
    assert p.page.locator("#nm-results .result > .tok").all_inner_texts() == [shown(" rub") + " → ruble"]
    # p(target) beside each context, and the filter keeps only the contexts above the bound / predicted top-1.
    assert p.page.locator("#nm-cluster-contexts .ctx .p").count() > 0

    def shown_p() -> list[float]:
        return [float(t.split()[1]) for t in p.page.locator("#nm-cluster .ctx .p").all_inner_texts()]

    before = shown_p()
    assert min(before) < 0.5
    p.page.select_option("#nm-pfilter", "0.5")
    after = shown_p()
    assert after and min(after) >= 0.5  # the low ones are gone (the list shows 12 of the carried 30)
    p.page.select_option("#nm-pfilter", "top1")
    titles = p.page.locator("#nm-cluster .ctx .p").evaluate_all("els => els.map(e => e.title)")
    assert titles and all("(predicted top-1)" in t for t in titles)
    p.assert_clean()


def test_deep_links_open_a_cluster_or_a_neuron(browser, words_page):
    path, payload = words_page
    p = Page(browser, path, "#cluster=2")
    assert p.text("#nm-cluster-title").startswith("#2 ")
    # A click updates the address; a neuron's link opens it and its cluster.
    p.page.locator("#nm-cluster tr.link").first.click()
    p.page.wait_for_selector("#nm-neuron-title")
    name = p.text("#nm-neuron-title").split()[1]
    assert p.page.evaluate("location.hash") == f"#cluster=2&neuron={name}"
    p.page.locator("#nm-cluster-list tr.link").nth(1).click()
    other = int(p.page.locator("#nm-cluster-list tr.link").nth(1).get_attribute("data-cluster"))
    assert p.page.evaluate("location.hash").startswith(f"#cluster={other}&")
    p.assert_clean()
    layer, index = name[1:].split("/")
    q = Page(browser, path, f"#neuron=L{layer}/{index}")
    assert q.text("#nm-neuron-title").startswith(f"neuron L{layer}/{index} ")
    row = next(i for i, (lay, n) in enumerate(zip(payload["neurons"]["layer"], payload["neurons"]["neuron"], strict=True))
               if lay == int(layer) and n == int(index))  # fmt: skip
    assert q.text("#nm-cluster-title").startswith(f"#{payload['neurons']['cluster'][row]} ")
    q.assert_clean()
    r = Page(browser, path, "#cluster=99999")  # a link to nothing opens nothing, and breaks nothing
    assert r.page.locator("#nm-cluster-title").count() == 0
    r.assert_clean()


def test_csv_export_of_a_cluster(browser, words_run, words_page):
    path, payload = words_page
    p = Page(browser, path, "#cluster=1")
    with p.page.expect_download() as info:
        p.page.click("#nm-export-neurons")
    download = info.value
    assert download.suggested_filename == "run-cluster-1-neurons.csv"
    table = pd.read_csv(download.path(), keep_default_na=False)
    neurons = load_view(words_run).map.neurons
    mine = neurons[neurons["cluster"] == 1].sort_values(
        ["strength", "layer", "neuron"], ascending=[False, True, True]
    )
    assert list(table.columns) == ["layer", "neuron", "cluster", "strength", "degree", "top_tokens"]
    assert table[["layer", "neuron"]].values.tolist() == mine[["layer", "neuron"]].values.tolist()
    assert table["strength"].to_numpy() == pytest.approx(mine["strength"].to_numpy(), rel=1e-3)
    assert (table["cluster"] == 1).all()
    tokens = [json.loads(t) for t in table["top_tokens"]]
    assert all(isinstance(t, list) and t for t in tokens)

    with p.page.expect_download() as info:
        p.page.click("#nm-export-contexts")
    text = Path(info.value.path()).read_text("utf-8")
    table = pd.read_csv(io.StringIO(text), keep_default_na=False)
    assert list(table.columns) == ["context_id", "score_mass", "p_target", "known", "target", "text"]
    contexts = pd.read_parquet(words_run / "contexts.parquet").set_index("context_id")
    refs = [r[0] for r in payload["partitions"]["cluster"]["contexts"][1]]
    assert table["context_id"].tolist() == [payload["contexts"]["id"][r] for r in refs]
    rows = contexts.loc[table["context_id"]]
    assert table["target"].tolist() == rows["target"].tolist()
    assert table["p_target"].to_numpy() == pytest.approx(rows["p_target"].to_numpy(), rel=1e-3)
    assert table["text"].tolist() == rows["text"].tolist()  # hostile text round-trips (short texts: whole)
    assert table["known"].tolist() == rows["known"].tolist()  # "true"/"false", read back as booleans
    assert p.errors == [] and p.dialogs == [] and p.page.evaluate("window.__pwned") is None
    assert [u for u in p.requests if not u.startswith("blob:")] == [
        p.url
    ]  # the downloads are made in the page


def test_2000_clusters_page_through_heatmaps_and_list(browser, tmp_path):
    run = write_large_map(tmp_path / "big", n_clusters=2000, d_mlp=1000)  # 20,000 neurons
    path = write_page(run)
    assert path.stat().st_size < 12e6
    p = Page(browser, path)
    assert p.load_seconds < 20
    assert p.page.locator("#nm-map .point").count() == 2000
    labels = [t for t in p.page.evaluate("document.getElementById('nm-map').data[0].text") if t]
    assert 0 < len(labels) <= 31  # the largest clusters are labelled, the rest on hover

    def columns(plot: str) -> list[str]:
        return p.page.evaluate(f"document.getElementById('{plot}').layout.xaxis.ticktext")

    first = columns("nm-layers")
    assert len(first) == 61 and first[-1] == "others" and columns("nm-matrix") == first
    # "others" sums the rest: each layer's row adds up to the layer's neurons
    z = p.page.evaluate("document.getElementById('nm-layers').data[0].z")
    assert sum(map(sum, z)) == 20_000
    started = time.perf_counter()
    p.page.locator("#nm-layers-pager .next").click()
    second = columns("nm-layers")
    assert len(second) == 61 and not set(second[:-1]) & set(first[:-1])
    assert columns("nm-matrix") == second  # both heatmaps page together
    assert "clusters 61–120 of 2000" in p.text("#nm-layers-pager")
    p.page.locator("#nm-layers-pager .all").click()
    assert len(p.page.evaluate("document.getElementById('nm-layers').data[0].x")) == 2000
    p.page.locator("#nm-layers-pager .all").click()
    assert len(columns("nm-layers")) == 61
    assert time.perf_counter() - started < 10
    # The cluster list pages too; opening a cluster far down turns list and heatmaps to its page.
    assert "clusters 1–25 of 2000" in p.text("#nm-list-pager")
    p.page.locator("#nm-list-pager .next").click()
    assert "clusters 26–50 of 2000" in p.text("#nm-list-pager")
    order = p.page.evaluate(
        "[...document.querySelectorAll('#nm-cluster-list tr.link')].map(r => +r.dataset.cluster)"
    )
    assert len(order) == 25
    p.page.evaluate("location.hash = 'cluster=1999'")
    p.page.wait_for_function("document.querySelector('#nm-cluster-title')?.textContent.startsWith('#1999 ')")
    assert "#1999" in columns("nm-layers")
    assert p.page.locator("#nm-cluster-list tr.selected").get_attribute("data-cluster") == "1999"
    p.assert_clean()


def test_causal_axis_names_a_layer_subset(browser, tmp_path):
    run = make_mapped_run(tmp_path / "run", n_layers=7, map_params={"null_samples": 0})
    tokens = ["The", " Eiffel", " Tower", " is", " in"]
    facts = pd.DataFrame({"fact_id": [0], "subject": ["Eiffel Tower"], "prompt": ["The {} is in"], "target": [" Paris"],
                          "tokens": [tokens], "subject_start": [1], "subject_end": [3], "p_clean": [0.6],
                          "p_corrupted": [0.1]})  # fmt: skip
    rows = [(0, kind, layer, pos, 0.1 * layer + 0.01 * pos) for kind in ("hidden", "mlp") for layer in (0, 3, 6)
            for pos in range(len(tokens))]  # fmt: skip
    table = pd.DataFrame(rows, columns=["fact_id", "kind", "layer", "position", "effect"])
    atomic_write_parquet(facts, run / "facts.parquet")
    atomic_write_parquet(table, run / "causal_trace.parquet")
    RunDir(run).set_stage("causal_trace", status="complete", model={"spec": "synthetic", "weights_hash": "0"})
    causal = build_payload(load_view(run))["causal"]
    assert causal["layers"] == [0, 3, 6] and causal["average"] is None
    p = Page(browser, write_page(run))
    axis = p.page.evaluate("document.getElementById('nm-causal').layout.xaxis")
    assert axis["ticktext"] == ["0", "3", "6"] and axis["tickvals"] == [0, 1, 2]
    assert p.page.evaluate("document.getElementById('nm-causal').data[0].z[1]") == pytest.approx(
        [0.01, 0.31, 0.61]
    )
    box = p.page.locator("#nm-causal .nsewdrag").first.bounding_box()
    p.page.mouse.click(box["x"] + 0.85 * box["width"], box["y"] + 0.5 * box["height"])  # the last column
    p.page.wait_for_function("document.querySelector('#nm-layer').value === '6'")
    p.assert_clean()
