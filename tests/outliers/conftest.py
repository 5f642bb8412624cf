"""Fixtures of the outlier wing: a small synthetic labelled corpus and an isolated embedding cache."""

from __future__ import annotations

import csv
import random

import pytest

VOCAB = {
    "animals": [
        "cat",
        "dog",
        "horse",
        "cow",
        "sheep",
        "lion",
        "tiger",
        "bird",
        "fish",
        "mouse",
        "goat",
        "duck",
    ],
    "tools": [
        "hammer",
        "saw",
        "drill",
        "wrench",
        "screwdriver",
        "pliers",
        "chisel",
        "shovel",
        "rake",
        "axe",
        "clamp",
        "file",
    ],
    "food": [
        "bread",
        "cheese",
        "apple",
        "rice",
        "soup",
        "pasta",
        "salad",
        "cake",
        "pizza",
        "bean",
        "honey",
        "butter",
    ],
    "weather": [
        "rain",
        "snow",
        "wind",
        "storm",
        "cloud",
        "sun",
        "fog",
        "hail",
        "thunder",
        "frost",
        "breeze",
        "heat",
    ],
}
FILLER = ["the", "a", "and", "with", "of", "near", "some", "very", "this", "that"]


def synthetic_rows(per_class: int = 50, seed: int = 0, classes: tuple[str, ...] = tuple(VOCAB)) -> list[dict]:
    """Texts of 6-10 words: mostly the class's own words, some filler, a few words of any class.

    A random-weight encoder separates these only roughly (about 75% for a linear probe): enough to test
    that things learn, and the classes overlap, so there is a boundary to find."""
    rng = random.Random(seed)
    rows = []
    for i in range(per_class):
        for label in classes:
            words = []
            for _ in range(rng.randint(6, 10)):
                r = rng.random()
                if r < 0.85:
                    words.append(rng.choice(VOCAB[label]))
                elif r < 0.97:
                    words.append(rng.choice(FILLER))
                else:
                    words.append(rng.choice(VOCAB[rng.choice(list(VOCAB))]))
            rows.append({"text": " ".join(words) + f" {i}", "label": label})
    return rows


def write_csv(path, rows, fields=("text", "label")) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module", autouse=True)
def isolated_cache(tmp_path_factory):
    """Embeddings go to a temporary cache, never the user's. Module-scoped: in place before a module's own
    fixtures (a trained classifier), and undone after the module, so other test folders see the real cache."""
    cache = tmp_path_factory.getbasetemp() / "neuronmap-cache"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURONMAP_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def synthetic_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synthetic.csv"
    write_csv(path, synthetic_rows())
    return path
