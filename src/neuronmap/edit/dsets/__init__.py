"""Data sets for the edit wing: CounterFact files, the built-in ``counterfact-lite``, and fact prompts for
causal tracing from any context source."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from neuronmap.edit.dsets.counterfact import Record, parse_record, read_counterfact
from neuronmap.errors import NeuronmapError

LITE = "builtin:counterfact-lite"

__all__ = ["LITE", "Fact", "Record", "load_facts", "load_records", "parse_record", "read_counterfact"]


def load_records(spec: str | Path, limit: int | None = None, offset: int = 0) -> list[Record]:
    """CounterFact records from ``builtin:counterfact-lite`` or a CounterFact ``.json`` file: ``limit`` of them
    after the first ``offset`` (a held-out slice, e.g. for a layer sweep)."""
    if limit is not None and limit < 1:
        raise NeuronmapError(f"limit must be a positive number of records, got {limit}")
    if offset < 0:
        raise NeuronmapError(f"offset must not be negative, got {offset}")
    spec = str(spec)
    if spec == LITE:
        from neuronmap.edit.dsets.lite import counterfact_lite

        records = list(counterfact_lite())
    elif spec.startswith("builtin:"):
        raise NeuronmapError(
            f"'{spec}' has no rewrite requests; the built-in evaluation set is {LITE} (made from builtin:facts)"
        )
    else:
        records = read_counterfact(spec)
    if offset >= len(records):
        raise NeuronmapError(f"{spec} has {len(records)} records; offset {offset} leaves none")
    return records[offset:][:limit]


@dataclass(frozen=True)
class Fact:
    """A prompt to trace: ``prompt`` with ``{}`` for ``subject``, and the target (None: the model's top-1)."""

    fact_id: int
    prompt: str
    subject: str
    target: str | None
    relation: str | None = None
    where: str = "the prompt"  # where it came from, for messages


def load_facts(spec: str | Path, limit: int | None = None, seed: int = 0) -> tuple[list[Fact], bool]:
    """Facts for causal tracing from a CounterFact source (its true targets) or any context source
    (``builtin:facts``, JSONL...; every context needs a subject). Also says whether the source is built in."""
    spec = str(spec)
    if spec == LITE or spec.endswith(".json") and _is_counterfact(spec):
        records = load_records(spec, limit)
        return [
            Fact(
                i, r.request.prompt, r.request.subject, r.target_true, r.relation, f"{spec}: case {r.case_id}"
            )
            for i, r in enumerate(records)
        ], spec.startswith("builtin:")
    from neuronmap.contexts.loaders import load_contexts

    contexts = load_contexts(spec, limit=limit, seed=seed)
    out = []
    for i, c in enumerate(contexts):
        if not c.subject:
            raise NeuronmapError(
                f"{spec}: context {i + 1} has no subject; causal tracing corrupts the subject"
            )
        relation = c.groups.get("relation")
        prompt = c.text.replace(c.subject, "{}", 1)
        relation = None if relation is None else str(relation)
        out.append(Fact(i, prompt, c.subject, c.target, relation, contexts.where(i)))
    return out, contexts.builtin


def _is_counterfact(path: str) -> bool:
    import json

    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(data, list) and bool(data) and isinstance(data[0], dict) and "requested_rewrite" in data[0]
    )
