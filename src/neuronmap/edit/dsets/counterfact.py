"""CounterFact records (Meng et al. 2022): a rewrite request with the prompts that test it.

Only the fields the evaluation uses are read: ``case_id``, ``requested_rewrite`` (``prompt`` with ``{}``,
``subject``, ``target_new.str``, ``target_true.str``, optional ``relation_id``), and the lists
``paraphrase_prompts``, ``neighborhood_prompts`` and ``generation_prompts`` (missing lists are empty).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuronmap.edit.algorithm.request import Request
from neuronmap.errors import NeuronmapError

LISTS = ("paraphrase_prompts", "neighborhood_prompts", "generation_prompts")


@dataclass(frozen=True)
class Record:
    case_id: int | str
    request: Request  # with target_true set
    relation: str | None
    paraphrase_prompts: tuple[str, ...]
    neighborhood_prompts: tuple[str, ...]
    generation_prompts: tuple[str, ...]

    @property
    def target_true(self) -> str:
        assert self.request.target_true is not None
        return self.request.target_true

    def to_json(self) -> dict[str, Any]:
        """The record in CounterFact's JSON layout."""
        r = self.request
        return {
            "case_id": self.case_id,
            "requested_rewrite": {
                "prompt": r.prompt,
                "subject": r.subject,
                "relation_id": self.relation,
                "target_new": {"str": r.target_new},
                "target_true": {"str": r.target_true},
            },
            **{name: list(getattr(self, name)) for name in LISTS},
        }


def parse_record(data: Any, where: str) -> Record:
    """One CounterFact record; errors name ``where`` (file and record)."""
    if not isinstance(data, dict):
        raise NeuronmapError(f"{where}: a CounterFact record is a JSON object")
    rewrite = data.get("requested_rewrite")
    if not isinstance(rewrite, dict):
        raise NeuronmapError(f"{where}: missing field 'requested_rewrite'")
    fields: dict[str, str] = {}
    for name, path in (
        ("prompt", ("prompt",)),
        ("subject", ("subject",)),
        ("target_new", ("target_new", "str")),
        ("target_true", ("target_true", "str")),
    ):
        value: Any = rewrite
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if not isinstance(value, str):
            raise NeuronmapError(f"{where}: missing field 'requested_rewrite.{'.'.join(path)}'")
        fields[name] = value
    lists = {}
    for name in LISTS:
        value = data.get(name, [])
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise NeuronmapError(f"{where}: '{name}' must be a list of strings")
        lists[name] = tuple(value)
    request = Request(fields["prompt"], fields["subject"], fields["target_new"], fields["target_true"])
    try:
        request.validate()
    except NeuronmapError as exc:
        raise NeuronmapError(f"{where}: {exc}") from None
    relation = rewrite.get("relation_id")
    return Record(data.get("case_id", where), request, None if relation is None else str(relation), **lists)


def read_counterfact(path: str | Path) -> list[Record]:
    """Every record of a CounterFact JSON file (a list of records)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise NeuronmapError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise NeuronmapError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, list) or not data:
        raise NeuronmapError(f"{path}: a CounterFact file is a non-empty JSON list of records")
    return [parse_record(item, f"{path}: record {i + 1}") for i, item in enumerate(data)]
