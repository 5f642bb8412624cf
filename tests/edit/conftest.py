"""Fixtures of the edit wing: private float64 tiny models (edits change weights, so the session-wide cache of
tests/conftest.py is not shared), a small corpus, and cheap ROME hparams."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CORPUS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "Rome is the capital city of Italy and a special comune.",
    "The Colosseum is an elliptical amphitheatre in the centre of the city of Rome.",
    "Tokyo is the capital and most populous city of Japan.",
    "Mount Everest is the highest mountain above sea level, in the Himalayas.",
    "The Amazon is a large river in South America, flowing through Brazil.",
    "Berlin is the capital and largest city of Germany by population.",
    "Paris is the capital and most populous city of France.",
]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Statistics and prefixes go to a per-session cache, never the user's."""
    monkeypatch.setenv("NEURONMAP_CACHE", str(tmp_path_factory.getbasetemp() / "nm-cache"))


@pytest.fixture
def fresh():
    """A newly loaded float64 tiny model per test: tests may change its weights."""
    from neuronmap.models.loader import load_model

    return lambda name: load_model(name, dtype="float64")


@pytest.fixture
def corpus_texts():
    return list(CORPUS)


@pytest.fixture
def corpus_file(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(CORPUS) + "\n")
    return path


@pytest.fixture
def small_stats(corpus_file):
    """Second moments from the small corpus (100 tokens > 64 neurons: C is invertible)."""
    return {"mom2_corpus": str(corpus_file), "mom2_n_tokens": 100, "mom2_max_length": 32}


@pytest.fixture
def memit_hparams(small_stats):
    """Few steps, two prefixes of one kind, statistics from the small corpus; ``mom2_update_weight`` 2, of the order of the new keys' K K^T, so that both terms count."""
    from neuronmap.edit.hparams import MemitHparams

    return MemitHparams(
        layers=(0, 1, 2),
        v_num_grad_steps=3,
        clamp_norm_factor=4.0,
        context_template_length_params=((3, 2),),
        mom2_update_weight=2.0,
        **small_stats,
    )


@pytest.fixture
def small_hparams(small_stats):
    """Few steps, two prefixes, statistics from the small corpus: seconds on a tiny model."""
    from neuronmap.edit.hparams import RomeHparams

    return RomeHparams(
        layer=1,
        v_num_grad_steps=4,
        context_template_length_params=((3, 2),),
        mom2_ridge=1e-3,
        **small_stats,
    )


@pytest.fixture
def hparams_file(tmp_path, small_hparams):
    path = tmp_path / "hp.json"
    path.write_text(json.dumps(small_hparams.to_dict()))
    return path


@pytest.fixture
def run(capsys, monkeypatch):
    """The CLI in this process (``main`` as the console script calls it): (exit code, stdout, stderr)."""
    from neuronmap.cli import main

    def call(*args):
        monkeypatch.setattr(sys, "argv", ["neuronmap", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return call
