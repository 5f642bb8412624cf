"""Per-relation prompt templates for ``builtin:counterfact-lite``: paraphrases and generation prompts.

Placeholders: ``{S}`` the subject as it opens a sentence ("The Gambia"), ``{s}`` mid-sentence ("the Gambia"),
``{x}`` the bare subject ("Gambia"), ``{be}`` "is" or "are" as the fact's text has it, ``{unit}`` the noun before
the object in the fact's text ("city", "country").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Relation:
    paraphrases: tuple[str, ...]
    generations: tuple[str, ...]


PLACE = ("{S} {be} known for", "The history of {s}", "People who visit {s}")
LANDMARK = ("{S} {be} a place where", "Visitors to {s} often", "{S} {be} famous because")

RELATIONS: dict[str, Relation] = {
    "continent": Relation(
        (
            "{S} can be found on the continent of",
            "Geographically, {s} {be} part of the continent of",
            "The continent that {s} {be} on is",
        ),
        PLACE,
    ),
    "landmark_city": Relation(
        ("{S} can be found in the city of", "{S} {be} a famous landmark in the city of"), LANDMARK
    ),
    "landmark_state": Relation(
        ("{S} can be found in the state of", "{S} {be} a famous place in the state of"), LANDMARK
    ),
    "landmark_country": Relation(
        ("{S} can be found in the country of", "{S} {be} a famous landmark in the country of"), LANDMARK
    ),
    "region_country": Relation(
        ("{S} {be} a region of the country of", "{S} {be} part of the country of"), PLACE
    ),
    "birthplace": Relation(
        ("The birthplace of {s} is the {unit} of", "{S} is a native of the {unit} of"),
        ("{S} is best known for", "{S} grew up", "The life of {s}"),
    ),
    "company_country": Relation(
        ("{S} is based in the country of", "The company {x} comes from the country of"),
        ("{S} is known for", "{S} makes", "The history of {s}"),
    ),
    "city_state": Relation(
        ("{S} is located in the state of", "The city of {x} is in the state of"),
        ("{S} is known for", "Life in {s}", "The history of {s}"),
    ),
    "team_location": Relation(
        ("{S} is based in the {unit} of", "The football club {x} plays its home games in the {unit} of"),
        ("{S} is known for", "Fans of {s}", "The history of {s}"),
    ),
    "river": Relation(
        ("{S} runs through the city of", "The river {x} passes through the city of"),
        ("{S} is", "The banks of {s}", "The history of {s}"),
    ),
    "capital": Relation(
        ("The capital city of {s} is", "{S}'s capital is the city of"),
        ("{S} {be} known for", "The history of {s}", "People who visit {s}"),
    ),
}

# Counterfactual targets of the same type as the true object.
POOLS: dict[str, tuple[str, ...]] = {
    "continent": ("Africa", "Asia", "Europe", "North America", "South America", "Oceania"),
    "city": ("Paris", "Rome", "Tokyo", "Berlin", "Madrid", "Moscow", "Cairo", "Sydney", "Chicago", "Vienna"),
    "state": ("Texas", "Florida", "Ohio", "Nevada", "Oregon", "Arizona", "Michigan", "Colorado", "Alaska"),
    "country": ("France", "Italy", "Japan", "Spain", "Canada", "Brazil", "India", "China", "Egypt", "Mexico"),
}
