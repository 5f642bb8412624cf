"""The causal check (`neuronmap verify`) on the page: the cluster detail shows each checked cluster's effect and
pass mark, the header how many pass, and a run without a check shows neither (a real browser for the view)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from test_explore_browser import Page

from neuronmap.explore.data import load_view
from neuronmap.explore.page import build_payload, write_page


def js_fmt(x: float) -> str:
    """A number as the page's fmt() prints it (three significant digits)."""
    text = f"{float(f'{x:.3g}'):.10g}"
    return text


def write_check(run: Path, unchecked: int = 2) -> pd.DataFrame:
    """graph/verify.parquet and summary.json's verify section as `neuronmap verify` writes them, with made-up
    values: cluster c has diff -(c + 1) / 10 - 0.0123, the even ones pass; cluster ``unchecked`` is not checked."""
    clusters = pd.read_parquet(run / "graph" / "clusters.parquet")
    rows = []
    for c, size in zip(clusters["cluster"], clusters["size"], strict=True):
        if c == unchecked:
            continue
        diff = -(c + 1) / 10 - 0.0123
        rows.append({"cluster": c, "n_neurons": size, "n_tokens": 4, "n_events_in": 10 + c, "n_events_out": 50,
                     "effect_in": diff - 0.05, "effect_out": -0.05, "diff": diff, "ci_low": diff - 0.2,
                     "ci_high": diff + 0.05, "null_mean": 0.01, "null_sd": 0.02, "p": 0.05, "p_adjusted": 0.05,
                     "passes": c % 2 == 0, "null_pool": "map"})  # fmt: skip
    table = pd.DataFrame(rows)
    table.to_parquet(run / "graph" / "verify.parquet", index=False)
    summary = json.loads((run / "graph" / "summary.json").read_text())
    passing = table.loc[table["passes"], "cluster"].tolist()
    summary["verify"] = {"params": {"ablate": "zero", "null_samples": 20}, "tested": len(table),
                         "passing": passing, "passing_neuron_share": 0.5}  # fmt: skip
    (run / "graph" / "summary.json").write_text(json.dumps(summary))
    return table


def test_payload_carries_the_check(run_copy):
    assert build_payload(load_view(run_copy))["partitions"]["cluster"]["verify"] is None  # no check: nothing
    table = write_check(run_copy)
    payload = build_payload(load_view(run_copy))
    verify = payload["partitions"]["cluster"]["verify"]
    assert verify[2] is None and payload["partitions"]["merged"]["verify"] is None
    for r in table.itertuples():
        assert verify[r.cluster][0] == float(f"{r.diff:.4g}") and verify[r.cluster][5] == bool(r.passes)
    assert payload["meta"]["verify"].startswith(f"causal check (zero ablation): {int(table.passes.sum())} of")


def test_cluster_detail_shows_the_effect_and_pass_mark(browser, run_copy):
    table = write_check(run_copy).set_index("cluster")
    path = write_page(run_copy)
    p = Page(browser, path)
    assert "causal check (zero ablation)" in p.text("#nm-summary")
    clusters = pd.read_parquet(run_copy / "graph" / "clusters.parquet")["cluster"].tolist()
    assert p.page.locator("#nm-map .point").count() == len(clusters)
    seen = set()
    for cluster in clusters:  # opened from the cluster list, each waited for by its own title
        p.page.locator(f'#nm-cluster-list tr.link[data-cluster="{cluster}"]').click()
        p.page.wait_for_function(
            "c => (document.querySelector('#nm-cluster-title')?.textContent || '').startsWith(`#${c} `)",
            arg=int(cluster),
        )
        seen.add(cluster)
        if cluster not in table.index:
            assert p.page.locator("#nm-cluster-verify").count() == 0
            continue
        line = p.text("#nm-cluster-verify")
        row = table.loc[cluster]
        assert js_fmt(row["diff"]) in line and f"{row.n_events_in} / {row.n_events_out} events" in line
        assert line.endswith("· passes") if row.passes else line.endswith("· does not pass")
    assert seen == set(range(len(table) + 1)) and np.any(~table["passes"])
    p.assert_clean()
