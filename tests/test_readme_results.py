"""Numbers the README quotes from result files in the repository (and from the built-in data): each is read here
from its source, so a number copied by hand cannot drift from what was measured."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


@pytest.fixture(scope="module")
def readme() -> str:
    return " ".join((ROOT / "README.md").read_text().split())  # line breaks fall anywhere in a paragraph


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"the README no longer says {pattern!r}"
    return float(match.group(1).replace(",", ""))


def _result(name: str) -> dict:
    return json.loads((RESULTS / name).read_text())


def test_each_token_speed_matches_its_result_file(readme: str) -> None:
    result = _result("events.json")
    assert _number(r"\*\*([\d.,]+) events/s\*\*", readme) == result["events_per_second"]
    assert _number(r"\*\*([\d.,]+) contexts/s\*\*", readme) == result["contexts_per_second"]
    assert _number(r"a ratio of \*\*([\d.]+)\*\*", readme) == result["ratio"]
    assert _number(r"\(`bench/results/events.json`, (\d+) paragraphs", readme) == result["documents"]
    assert _number(r"median of (\d+) alternated repeats", readme) == result["repeats"]
    hours = 1e6 / result["events_per_second"] / 3600
    assert _number(r"a million events take about ([\d.]+) hours", readme) == round(hours, 1)


def test_peers_table_matches_its_result_file(readme: str) -> None:
    rows = {(r["benchmark"], r["case"].split(" (")[0]): r["value"] for r in _result("peers.json")["rows"]}
    speedup = {
        "attribution vs TransformerLens": rows["attribution", "speed-up vs TransformerLens"],
        "attribution vs nnsight": rows["attribution", "speed-up vs nnsight"],
        "neuronmap's defaults": rows["integrated-gradients", "speed-up neuronmap vs knowledge-neurons"],
        "neuronmap with its definition": rows[
            "integrated-gradients", "speed-up neuronmap, knowledge-neurons' definition vs knowledge-neurons"
        ],
    }
    table = {line.split(" | ")[0]: line for line in re.findall(r"\| [^|]+ \|[^|]+\| [\d.]+x \|", readme)}
    for key, value in speedup.items():
        row = next(line for name, line in table.items() if key in name)
        assert _number(r"\| ([\d.]+)x \|$", row) == round(value, 2), key
    assert _number(r"Pearson ([\d.]+) \(different metric", readme) == round(
        rows["integrated-gradients", "Pearson neuronmap vs knowledge-neurons"], 2
    )
    assert _number(r"modularity ([\d.]+) vs [\d.]+ \|", readme) == round(
        rows["map", "neuronmap modularity"], 3
    )
    assert _number(r"modularity [\d.]+ vs ([\d.]+) \|", readme) == round(
        rows["map", "original modularity"], 3
    )
    assert _number(r"\| (\d+)x \(([\d.]+) s vs", readme) == round(
        rows["map", "speed-up vs networkx + python-louvain"]
    )
    assert _number(r"x \(([\d.]+) s vs [\d.]+ s\)", readme) == round(rows["map", "neuronmap time"], 2)
    assert _number(r"x \([\d.]+ s vs ([\d.]+) s\)", readme) == round(rows["map", "original time"], 1)
    assert _number(r"met in both \(([\d.]+)x,", readme) == round(speedup["neuronmap's defaults"], 1)
    assert _number(r"met in both \([\d.]+x, ([\d.]+)x,", readme) == round(
        speedup["neuronmap with its definition"], 1
    )
    assert re.search(re.escape(_result("peers.json")["meta"]["when"]), readme)


def test_builtin_data_counts() -> None:
    """The sizes of the built-in data sets the README gives (read from the installed data packages)."""
    from neuronmap.contexts.builtin import _wiki_articles
    from neuronmap.outliers.data import load_labelled

    text = " ".join((ROOT / "README.md").read_text().split())
    assert _number(r"`builtin:wiki`, the ([\d,]+) Wikipedia lead paragraphs", text) == len(_wiki_articles())
    topics = load_labelled("builtin:wiki-topics")
    assert _number(r"\| `builtin:wiki-topics` \| ([\d,]+) Wikipedia", text) == len(topics.texts)
    assert _number(r"labelled by topic: (\d+) classes", text) == len(set(topics.labels))
    assert _number(r"\| `builtin:sentiment` \| ([\d,]+) IMDB", text) == len(
        load_labelled("builtin:sentiment").texts
    )
