"""Shared fixtures: tiny random-weight models (float64, so references agree to tight tolerances)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_models():
    """A cache of loaded tiny models: tiny_models("tiny-gpt2") -> LoadedModel in float64."""
    from neuronmap.models.loader import load_model

    cache = {}

    def get(name: str, dtype: str = "float64"):
        if (name, dtype) not in cache:
            cache[name, dtype] = load_model(name, dtype=dtype)
        return cache[name, dtype]

    return get
