"""``builtin:counterfact-lite``: CounterFact-style records made from the built-in fact set.

A record is a fact whose true object at least five other facts share (CounterFact's neighbourhood prompts are
other subjects with the same true object): the continents of countries (neighbours: ten other countries of that
continent), and the facts about London, California and Germany (neighbours: every other fact with that object,
across relations). Each gets the paraphrases and generation prompts of its relation (``relations.py``) and a
false target of the same type (another continent, city, state or country), drawn with a seed fixed by the
subject. Records alternate between objects, so the first N of them mix all objects.
"""

from __future__ import annotations

import random
from collections import defaultdict
from functools import cache

from neuronmap.contexts.builtin import facts
from neuronmap.contexts.record import Context
from neuronmap.edit.algorithm.request import Request
from neuronmap.edit.dsets.counterfact import Record
from neuronmap.edit.dsets.relations import POOLS, RELATIONS

NAME = "counterfact-lite"
MIN_NEIGHBOURS = 5
MAX_NEIGHBOURS = 10
OBJECTS = (
    "Africa",
    "Europe",
    "Asia",
    "North America",
    "Oceania",
    "South America",
    "London",
    "California",
    "Germany",
)
_UNITS = ("city", "country", "state", "continent")


def _phrases(fact: Context) -> dict[str, str]:
    """The placeholders of ``relations.py`` for one fact."""
    assert fact.subject is not None
    start = fact.text.index(fact.subject)
    before = fact.text[:start]
    article = before.lower().endswith("the ")
    mid = f"the {fact.subject}" if article else fact.subject
    words = fact.text.split()
    unit = next((w for w in reversed(words) if w in _UNITS), "place")
    be = "are" if f"{fact.subject} are " in fact.text else "is"
    return {"S": mid[0].upper() + mid[1:], "s": mid, "x": fact.subject, "be": be, "unit": unit}


def _template(fact: Context) -> str:
    """The fact's text with ``{}`` for the subject (its first occurrence, as the tracer finds it)."""
    assert fact.subject is not None
    return fact.text.replace(fact.subject, "{}", 1)


def _type(fact: Context) -> str:
    relation = fact.groups["relation"]
    if relation == "continent":
        return "continent"
    if relation in ("capital", "river", "landmark_city"):
        return "city"
    if relation in ("landmark_state", "city_state"):
        return "state"
    if relation in ("landmark_country", "region_country", "company_country"):
        return "country"
    return _phrases(fact)["unit"]


@cache
def counterfact_lite() -> tuple[Record, ...]:
    by_object: dict[str, list[Context]] = defaultdict(list)
    for fact in facts():
        if fact.target in OBJECTS and fact.subject and fact.groups["relation"] in RELATIONS:
            by_object[fact.target].append(fact)
    queues = {obj: list(by_object[obj]) for obj in OBJECTS if len(by_object[obj]) > MIN_NEIGHBOURS}
    ordered: list[tuple[str, Context]] = []  # (object, fact)
    while any(queues.values()):
        for obj in OBJECTS:
            if queues.get(obj):
                ordered.append((obj, queues[obj].pop(0)))
    return tuple(_record(i, fact, by_object[obj]) for i, (obj, fact) in enumerate(ordered))


def _record(case_id: int, fact: Context, same_object: list[Context]) -> Record:
    assert fact.subject is not None and fact.target is not None
    relation = fact.groups["relation"]
    rng = random.Random(f"{NAME}:{relation}:{fact.subject}")
    # A neighbour whose text contains the subject ("Guinea" in "Papua New Guinea") is not another subject.
    others = [f.text for f in same_object if f.subject != fact.subject and fact.subject not in f.text]
    neighbours = rng.sample(others, MAX_NEIGHBOURS) if len(others) > MAX_NEIGHBOURS else others
    kind = _type(fact)
    target_new = rng.choice([t for t in POOLS[kind] if t != fact.target])
    slots = _phrases(fact)
    templates = RELATIONS[relation]
    return Record(
        case_id=case_id,
        request=Request(_template(fact), fact.subject, target_new, fact.target),
        relation=relation,
        paraphrase_prompts=tuple(p.format(**slots) for p in templates.paraphrases),
        neighborhood_prompts=tuple(neighbours),
        generation_prompts=tuple(g.format(**slots) for g in templates.generations),
    )
