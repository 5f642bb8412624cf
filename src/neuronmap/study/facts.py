"""The study's facts: a rewrite request per fact, with the prompts that test the rewrite.

``builtin:facts`` (the default) is the hand-written part of the built-in fact set, opened by the three seed
facts of the observation the study tests (the Eiffel Tower's city, the White House's city, California's
country), then the other facts taken in turn from each relation, so that the first N mix relations. Each gets a
false target drawn (seeded by the subject) from the true targets of other facts of its relation, the
paraphrases of its relation where ``edit/dsets/relations.py`` has them, and up to five neighbours: facts of the
same relation about other subjects, each with its own true target (after the edit their true target should
still beat the new one). ``builtin:counterfact-lite`` and CounterFact ``.json`` files are read as records.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from neuronmap.contexts.builtin import _handwritten
from neuronmap.contexts.record import Context
from neuronmap.edit.dsets import LITE, load_records
from neuronmap.edit.dsets.lite import _phrases
from neuronmap.edit.dsets.relations import RELATIONS
from neuronmap.errors import NeuronmapError

DEFAULT = "builtin:facts"
# (subject, relation) of the seed facts, in the order the study opens with.
SEEDS = (
    ("Eiffel Tower", "landmark_city"),
    ("White House", "landmark_city"),
    ("California", "region_country"),
)
SEED_SUBJECTS = tuple(s for s, _ in SEEDS)
MAX_NEIGHBOURS = 5


@dataclass(frozen=True)
class StudyFact:
    fact_id: int
    prompt: str  # with {} for the subject
    subject: str
    target_true: str
    target_new: str
    relation: str | None
    paraphrases: tuple[str, ...]
    neighbours: tuple[tuple[str, str], ...]  # (prompt, its true target)
    seed: str | None  # the seed subject this fact is about, if any

    @property
    def text(self) -> str:
        return self.prompt.replace("{}", self.subject, 1)


def _seed_of(subject: str) -> str | None:
    return subject if subject in SEED_SUBJECTS else None


def load_study_facts(spec: str = DEFAULT, limit: int | None = None, seed: int = 0) -> list[StudyFact]:
    """The first ``limit`` facts of ``builtin:facts``, ``builtin:counterfact-lite`` or a CounterFact file."""
    if limit is not None and limit < 1:
        raise NeuronmapError(f"--limit must be at least 1, got {limit}")
    spec = str(spec)
    if spec == DEFAULT:
        facts = builtin_facts(seed)
    elif spec == LITE or spec.endswith(".json"):
        facts = [
            StudyFact(
                i,
                r.request.prompt,
                r.request.subject,
                r.target_true,
                r.request.target_new,
                r.relation,
                tuple(r.paraphrase_prompts),
                tuple((p, r.target_true) for p in r.neighborhood_prompts),
                _seed_of(r.request.subject),
            )
            for i, r in enumerate(load_records(spec))
        ]
    else:
        raise NeuronmapError(
            f"--facts takes {DEFAULT}, {LITE} or a CounterFact .json file (rewrite requests), got {spec!r}"
        )
    return facts[:limit]


def builtin_facts(seed: int = 0) -> list[StudyFact]:
    rows = [Context(text=t, target=o, subject=s, groups={"relation": r}) for t, o, s, r in _handwritten()]
    by_relation: dict[str, list[Context]] = defaultdict(list)
    for c in rows:
        by_relation[c.groups["relation"]].append(c)
    seeds = [
        next(c for c in rows if c.subject == subject and c.groups["relation"] == relation)
        for subject, relation in SEEDS
    ]
    queues = {r: [c for c in cs if c not in seeds] for r, cs in by_relation.items()}
    ordered = list(seeds)
    while any(queues.values()):
        for relation in by_relation:
            if queues[relation]:
                ordered.append(queues[relation].pop(0))
    return [_fact(i, c, by_relation[c.groups["relation"]], rows, seed) for i, c in enumerate(ordered)]


def _fact(i: int, c: Context, same: list[Context], every: list[Context], seed: int) -> StudyFact:
    assert c.subject is not None and c.target is not None
    relation = str(c.groups["relation"])
    rng = random.Random(f"study:{seed}:{relation}:{c.subject}")
    pool = sorted({str(o.target) for o in same} - {c.target}) or sorted(
        {str(o.target) for o in every} - {c.target}
    )
    target_new = rng.choice(pool)
    others = [
        (o.text, str(o.target))
        for o in same
        if o.subject != c.subject and c.subject not in o.text and o.target != target_new
    ]
    neighbours = rng.sample(others, MAX_NEIGHBOURS) if len(others) > MAX_NEIGHBOURS else others
    paraphrases: tuple[str, ...] = ()
    if relation in RELATIONS:
        slots = _phrases(c)
        paraphrases = tuple(p.format(**slots) for p in RELATIONS[relation].paraphrases)
    prompt = c.text.replace(c.subject, "{}", 1)
    return StudyFact(
        i,
        prompt,
        c.subject,
        c.target,
        target_new,
        relation,
        paraphrases,
        tuple(neighbours),
        _seed_of(c.subject),
    )
