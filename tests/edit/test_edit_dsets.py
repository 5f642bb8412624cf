"""Data sets: the built-in counterfact-lite meets the issue's shape; CounterFact files read strictly."""

from __future__ import annotations

import json

import pytest

from neuronmap.edit.dsets import LITE, load_facts, load_records
from neuronmap.edit.dsets.relations import POOLS
from neuronmap.errors import NeuronmapError


def test_counterfact_lite_shape():
    records = load_records(LITE)
    assert len(records) >= 100
    assert len({r.case_id for r in records}) == len(records)
    pool_of = {t: kind for kind, targets in POOLS.items() for t in targets}
    for r in records:
        req = r.request
        assert req.prompt.count("{}") == 1 and req.subject in req.text
        assert len(r.paraphrase_prompts) >= 2 and len(r.neighborhood_prompts) >= 5 and r.generation_prompts
        assert req.target_new != r.target_true and pool_of[req.target_new] == pool_of.get(
            r.target_true, pool_of[req.target_new]
        )
        assert all(r.request.subject in p for p in r.paraphrase_prompts)
        assert not any(r.request.subject in p for p in r.neighborhood_prompts)
    # The first hundred mix every object.
    assert len({r.target_true for r in records[:100]}) == 9


def test_counterfact_lite_is_deterministic():
    assert load_records(LITE, limit=20) == load_records(LITE, limit=20)


def test_counterfact_file_round_trip(tmp_path):
    records = load_records(LITE, limit=3)
    path = tmp_path / "cf.json"
    path.write_text(json.dumps([r.to_json() for r in records]))
    assert load_records(path) == records
    facts, builtin = load_facts(str(path))
    assert not builtin and [f.target for f in facts] == [r.target_true for r in records]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("requested_rewrite"), "record 1: missing field 'requested_rewrite'"),
        (lambda d: d["requested_rewrite"].pop("target_true"), "requested_rewrite.target_true"),
        (lambda d: d["requested_rewrite"].update(prompt="no braces"), "no '{}'"),
        (lambda d: d.update(paraphrase_prompts="x"), "list of strings"),
    ],
)
def test_bad_counterfact_records(tmp_path, mutate, message):
    data = load_records(LITE, limit=1)[0].to_json()
    mutate(data)
    path = tmp_path / "cf.json"
    path.write_text(json.dumps([data]))
    with pytest.raises(NeuronmapError, match=message):
        load_records(path)


def test_facts_from_context_sets():
    facts, builtin = load_facts("builtin:facts", limit=3)
    assert (
        builtin
        and facts[0].prompt == "The {} is located in the city of"
        and facts[0].subject == "Eiffel Tower"
    )
    with pytest.raises(NeuronmapError, match="no rewrite requests"):
        load_records("builtin:facts")
