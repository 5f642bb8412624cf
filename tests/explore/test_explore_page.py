"""The page file: self-contained, escaped, locked down by its Content-Security-Policy, deterministic; and the
explore stage never imports torch."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import subprocess
import sys

from explore_fixtures import SCRIPT_END, XSS

from neuronmap.explore.page import write_page


def scripts(page: str) -> list[tuple[str, str]]:
    return re.findall(r"<script([^>]*)>(.*?)</script>", page, flags=re.S)


def test_page_is_self_contained_escaped_and_locked_down(run_copy):
    path = write_page(run_copy)
    assert path == run_copy / "explorer.html"
    page = path.read_text("utf-8")
    found = scripts(page)
    assert len(found) == 3 and page.count("</script") == 3  # plotly, data, glue: no text closed a script
    assert XSS not in page and "<img src=x" not in page and SCRIPT_END not in page
    for tag in ("<script src", "<link", "<iframe", "<object", "<embed", "@import"):
        assert tag not in page
    # The data round-trip: hostile strings come back exactly from the JSON.
    data = json.loads(next(body for attrs, body in found if "application/json" in attrs))
    assert " " + XSS in data["tokens"] and " " + SCRIPT_END in data["tokens"]
    assert XSS in data["groups"]["relation"]
    assert set(data["groups"]) == {"relation", "pos"}  # title names each context: no group
    # Only the two executable scripts may run, by hash; nothing may be fetched.
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page)[1])
    assert "default-src 'none'" in csp and "connect-src 'none'" in csp
    assert "unsafe" not in next(part for part in csp.split(";") if "script-src" in part)
    for attrs, body in found:
        if "application/json" not in attrs:
            digest = base64.b64encode(hashlib.sha256(body.encode("utf-8")).digest()).decode()
            assert f"'sha256-{digest}'" in csp


def test_page_is_deterministic(run_copy, tmp_path):
    first = write_page(run_copy, tmp_path / "a.html").read_bytes()
    assert write_page(run_copy, tmp_path / "b.html").read_bytes() == first


def test_explore_does_not_import_torch(run_copy):
    code = (
        "import sys\n"
        "from neuronmap.cli import app\n"
        f"app(['explore', {str(run_copy)!r}, '--figures'], standalone_mode=False)\n"
        "assert 'torch' not in sys.modules, 'explore imported torch'\n"
        "assert 'transformers' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (run_copy / "explorer.html").is_file() and (run_copy / "figures" / "layers.png").is_file()


def test_page_marks_coherent_clusters_and_names_both_modularities(run_copy, tmp_path):
    """A map with coherence (embeddings in which each group's target tokens lie together): the page's data
    carry the clusters' coherence and pass flags exactly as clusters.parquet has them, and both modularities."""
    import numpy as np
    import pandas as pd

    from neuronmap.explore.data import load_view
    from neuronmap.explore.page import build_payload
    from neuronmap.graph.api import map_run

    contexts = pd.read_parquet(run_copy / "contexts.parquet")
    rng = np.random.default_rng(0)
    table = rng.normal(size=(2000, 16))
    for _, ids in contexts.groupby("relation")["target_ids"]:
        centre = rng.normal(size=16) * 3
        for token in {int(t[0]) for t in ids}:
            table[token] = centre + rng.normal(size=16) * 0.2
    np.save(tmp_path / "emb.npy", table)
    result = map_run(
        run_copy,
        force=True,
        null_samples=2,
        stability_seeds=0,
        export="none",
        embeddings=str(tmp_path / "emb.npy"),
    )
    assert result.clusters["coherent"].any()
    data = build_payload(load_view(run_copy))
    part = data["partitions"]["cluster"]
    assert part["coherent"] == result.clusters["coherent"].tolist()
    q = result.clusters["coherence_p"]
    assert [x is None for x in part["coherenceQ"]] == q.isna().tolist()
    meta = data["meta"]
    assert meta["modularityFull"] == result.summary["modularity_full"]
    assert meta["modularityPruned"] == result.summary["modularity_pruned"]
    assert "tested clusters coherent" in meta["coherence"] and meta["groupsAmi"].startswith("AMI with groups")
    assert not any(data["partitions"]["merged"]["coherent"])  # the test is of found clusters only
    page = write_page(run_copy).read_text("utf-8")
    assert "isCoherent" in page and "modularityFull" in page
