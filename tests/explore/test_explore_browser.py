"""The page in a real browser (Debian's headless chromium through Playwright): it loads with no console error
and no network request, its views are linked, hostile text stays text, and 40,000 neurons do not freeze it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from explore_fixtures import SCRIPT_END, XSS, write_large_map

from neuronmap.explore.data import load_view
from neuronmap.explore.page import write_page

if TYPE_CHECKING:  # the browser tests skip where playwright is missing (conftest)
    from playwright.sync_api import Locator


def shown(token: str) -> str:
    """A token as the page prints it (spaces made visible)."""
    return token.replace(" ", "\u2423")


class Page:
    """A page opened in the browser, with what it logged, requested and tried to pop up."""

    def __init__(self, browser, path: Path, fragment: str = "") -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1600})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        started = time.perf_counter()
        self.page.goto(path.as_uri() + fragment)  # a fragment (#cluster=5) is a deep link
        self.page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        self.load_seconds = time.perf_counter() - started
        self.url = path.as_uri()

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def click_cluster_on_map(self, index: int = 0) -> None:
        """Click the index-th mark of the map (another cluster than the open one) and wait for its title: a title
        that merely exists may still be the previous cluster's."""
        self.click_and_wait_for_new("#nm-cluster-title", self.page.locator("#nm-map .point").nth(index))

    def click_and_wait_for_new(self, title: str, target: Locator) -> None:
        """Click ``target`` and wait until the element ``title`` exists with another text than before."""
        before = self.page.evaluate("s => document.querySelector(s)?.textContent ?? null", title)
        target.click(force=True)
        self.page.wait_for_function(
            "([s, prev]) => { const t = document.querySelector(s); return t !== null && t.textContent !== prev; }",
            arg=[title, before],
        )

    def search(self, query: str, substring: bool = False) -> None:
        self.page.set_checked("#nm-substring", substring)
        self.page.fill("#nm-search", query)
        self.page.wait_for_function(
            "q => document.querySelector('#nm-results').dataset.query === q", arg=query
        )

    def assert_clean(self) -> None:
        assert self.errors == []
        assert self.requests == [self.url]  # the page itself, nothing else
        assert self.dialogs == []
        assert self.page.evaluate("window.__pwned") is None
        assert self.page.locator("img").count() == 0


@pytest.fixture(scope="module")
def page_file(mapped_run, tmp_path_factory) -> tuple[Path, object]:
    view = load_view(mapped_run)
    return write_page(mapped_run, tmp_path_factory.mktemp("page") / "explorer.html", view=view), view


def test_click_a_cluster_and_search_a_token(browser, page_file, tmp_path):
    path, view = page_file
    p = Page(browser, path)
    p.click_cluster_on_map(0)
    header = p.text("#nm-cluster-title")
    cluster = int(header.split("·")[0].strip().lstrip("#"))
    tokens = view.map.cluster_tokens
    top = tokens[(tokens["partition"] == "cluster") & (tokens["cluster"] == cluster)].sort_values("rank")
    detail = p.text("#nm-cluster")
    assert shown(top["token"].iloc[0]) in detail  # its tokens, as bars
    assert "neurons per layer" in detail and "contexts where it mattered most" in detail

    # A neuron of the cluster: its detail shows its cluster and its contexts.
    p.page.locator("#nm-cluster tr.link").first.click()
    assert f"#{cluster}" in p.text("#nm-neuron") and "score distribution" in p.text("#nm-neuron")

    # Search a token: the cluster carrying it most is listed first, and a click opens it.
    token = " tok2b"
    p.search("tok2b")
    results = p.text("#nm-results")
    assert shown(token) in results
    col = int(view.tokens.index[view.tokens["token"] == token][0])
    carrier = int(view.partitions["cluster"].profiles[:, [col]].toarray().ravel().argmax())
    first_chip = p.page.locator("#nm-results .result").first.locator(".chip").first
    assert first_chip.inner_text().startswith(f"#{carrier} ")
    first_chip.click()
    assert p.text("#nm-cluster-title").startswith(f"#{carrier} ")

    p.page.screenshot(path=str(tmp_path / "explorer.png"), full_page=True)
    assert (tmp_path / "explorer.png").stat().st_size > 10_000
    p.assert_clean()


def test_hostile_text_is_shown_as_text_in_every_view(browser, page_file):
    path, view = page_file
    p = Page(browser, path)
    # The token view: search and token groups list the hostile tokens literally.
    p.search("img src", substring=True)
    assert shown(" " + XSS) in p.text("#nm-results")
    p.search("script", substring=True)
    assert shown(" " + SCRIPT_END) in p.text("#nm-results")
    assert shown(" " + XSS) in p.text("#nm-token-groups")
    # Cluster detail: bars labelled with the hostile token, contexts with the hostile text.
    p.page.locator("#nm-results .chip").first.click()
    detail = p.text("#nm-cluster")
    assert SCRIPT_END in detail
    # Hover every mark of the map (hover labels are plotly text too).
    points = p.page.locator("#nm-map .point")
    for i in range(points.count()):
        points.nth(i).hover(force=True)
    # Filters: the hostile group value is an option, shown as text, and filtering by it works.
    options = p.page.locator("#nm-group option").all_inner_texts()
    hostile = next(o for o in options if o.startswith(XSS))
    p.page.select_option("#nm-group", label=hostile)
    p.page.select_option("#nm-layer", label="layer 1")
    matrix = p.text("#nm-matrix")
    assert "<img src=x" in matrix  # the group x cluster matrix labels the hostile value literally
    if p.page.locator("#nm-cluster tr.link").count():
        p.page.locator("#nm-cluster tr.link").first.click()
    p.assert_clean()


def test_fast_with_40000_neurons_and_500_clusters(browser, tmp_path):
    run = write_large_map(tmp_path / "big")
    path = write_page(run)
    assert path.stat().st_size < 12e6  # the README's bound
    p = Page(browser, path)
    assert p.page.locator("#nm-map .point").count() == 500
    assert p.load_seconds < 20  # on a shared 2-core machine; typically about 5 s
    for i in (0, 250, 499):
        started = time.perf_counter()
        p.click_cluster_on_map(i)
        p.click_and_wait_for_new("#nm-neuron-title", p.page.locator("#nm-cluster tr.link").first)
        assert time.perf_counter() - started < 5
    started = time.perf_counter()
    p.page.select_option("#nm-partition", "merged")  # clusters 2k and 2k+1 are merged
    p.page.select_option("#nm-group", index=3)
    p.page.select_option("#nm-layer", index=5)
    p.search("tok12", substring=True)
    p.page.locator("#nm-results .chip").first.click()
    assert "merged #" in p.text("#nm-cluster-title")
    assert time.perf_counter() - started < 10
    p.assert_clean()
