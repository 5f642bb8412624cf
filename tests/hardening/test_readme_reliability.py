"""The README's Reliability section quotes numbers; each is read here from where it comes from."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bad_inputs import CASES
from test_bad_input import FRESH
from test_faults import KILL_STAGES, ROUNDS

ROOT = Path(__file__).resolve().parents[2]


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Reliability")
    return text[start : text.index("\n## ", start + 1)]


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"the README no longer says {pattern!r}"
    return float(match.group(1).replace(",", ""))


def test_counts_match_the_test_tables() -> None:
    section = _section()
    assert _number(r"\*\*([\d,]+) cases\*\*", section) == len(CASES)
    assert _number(r"\*\*([\d,]+) cases\*\* \(one or more per command family\)", section) == len(FRESH)
    kills = ROUNDS * 2 * len(KILL_STAGES)
    assert _number(r"\*\*([\d,]+) kills a run\*\*", section) == kills
    assert _number(r"\(\*\*[\d,]+ kills a run\*\*:\s+([\d,]+) on a random file event", section) == kills / 2


def test_serve_load_matches_its_test() -> None:
    source = (ROOT / "tests" / "explore" / "test_explore_serve.py").read_text()
    section = _section()
    for name, pattern in (
        ("LOAD_REQUESTS", r"\*\*([\d,]+) requests from [\d,]+ concurrent clients\*\*"),
        ("LOAD_CLIENTS", r"\*\*[\d,]+ requests from ([\d,]+) concurrent clients\*\*"),
        ("WARMUP_REQUESTS", r"after a warm-up of\s+([\d,]+)"),
    ):
        value = re.search(rf"\n{name} = ([\d_]+)", source)
        assert value, name
        assert _number(pattern, section) == int(value.group(1)), name


def test_window_memory_matches_its_result_file() -> None:
    result = json.loads((ROOT / "bench" / "results" / "window.json").read_text())
    section = _section()
    assert _number(r"\*\*([\d,]+) tokens\*\*", section) == result["tokens"]
    assert _number(r"peak \*\*([\d,]+) MB\*\*", section) == round(result["peak"] / 2**20)
    assert _number(r"estimate of\s+\*\*([\d,]+) MB\*\*", section) == round(result["estimate"] / 2**20)
    assert _number(r"\(ratio \*\*([\d.]+)\*\*\)", section) == round(result["ratio"], 2)
