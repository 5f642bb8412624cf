"""Numbers the README quotes from result files in the repository: each is read here from its file."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"the README no longer says {pattern!r}"
    return float(match.group(1).replace(",", ""))


def test_each_token_speed_matches_its_result_file() -> None:
    readme = " ".join((ROOT / "README.md").read_text().split())  # line breaks fall anywhere in a paragraph
    result = json.loads((ROOT / "bench" / "results" / "events.json").read_text())
    assert _number(r"\*\*([\d.,]+) events/s\*\*", readme) == result["events_per_second"]
    assert _number(r"\*\*([\d.,]+) contexts/s\*\*", readme) == result["contexts_per_second"]
    assert _number(r"a ratio of \*\*([\d.]+)\*\*", readme) == result["ratio"]
    assert _number(r"\(`bench/results/events.json`, (\d+) paragraphs", readme) == result["documents"]
    hours = 1e6 / result["events_per_second"] / 3600
    assert _number(r"a million events take about ([\d.]+) hours", readme) == round(hours, 1)
