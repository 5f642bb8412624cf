"""Context groups: part of speech on hand-checked sentences, word senses (two clearly different senses of
"bank" on the embedded model), and the group stage on a traced run (trace --group-by, skip, force, conflicts)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuronmap.contexts.grouping import (
    SENSE_EXAMPLE,
    SenseParams,
    cluster_senses,
    group_run,
    parse_groupings,
    pos_tags,
    sense_groups,
)
from neuronmap.errors import NeuronmapError
from neuronmap.rundir import RunDir, read_parquet

HAND_CHECKED = [
    ("The cat sat on the", "mat", "NOUN"),
    ("Yesterday she quickly", "ran", "VERB"),
    ("The house was very", "big", "ADJ"),
    ("He walked", "slowly", "ADV"),
    ("The Eiffel Tower is located in the city of", "Paris", "PROPN"),
    ("She gave the book to", "him", "PRON"),
    ("Two plus two is", "four", "NUM"),
    ("The keys are on the table", " and", "CCONJ"),  # a target that brings its own space
    ("The capital of France is ", "Paris", "PROPN"),  # a text that ends in one
    ("They went", "into", "ADP"),
]


def test_part_of_speech_of_the_target_in_its_context():
    texts, targets, expected = zip(*HAND_CHECKED, strict=True)
    assert pos_tags(list(texts), list(targets)) == list(expected)


def test_groupings_are_checked():
    assert parse_groupings("pos, sense,pos") == ["pos", "sense"]
    with pytest.raises(NeuronmapError, match="groupings are pos and/or sense"):
        parse_groupings("pos,colour")


def test_senses_from_embeddings():
    rng = np.random.default_rng(0)
    texts = [f"context {i}" for i in range(12)]
    two = np.vstack(
        [rng.normal(0, 0.1, (7, 16)) + 3 * np.eye(16)[0], rng.normal(0, 0.1, (5, 16)) - 3 * np.eye(16)[0]]
    )
    found = cluster_senses("bank", two, texts, SenseParams())
    assert found.labels.tolist() == [0] * 7 + [1] * 5  # numbered by size
    assert found.names[0].startswith("bank (context") and found.silhouette > 0.9
    assert found.typical[0][0] in range(7) and sorted(found.typical[1]) == list(range(7, 12))
    one = cluster_senses("water", rng.normal(0, 1, (12, 16)), texts, SenseParams())
    assert set(one.labels) == {0} and one.names == ["water"]


@pytest.mark.integration
def test_two_senses_of_bank_on_the_embedded_model():
    from neuronmap.models.loader import load_model
    from neuronmap.trace.batch import encode

    lm = load_model("smollm2-135m")
    rows = []
    for i, (text, target, _) in enumerate(SENSE_EXAMPLE):
        e = encode(lm.tokenizer, text, target)
        rows.append(
            {
                "context_id": i,
                "text": text,
                "target": target,
                "input_ids": list(e.input_ids),
                "target_ids": list(e.target_ids),
                "position": e.position,
            }
        )
    column, table = sense_groups(pd.DataFrame(rows), lm, SenseParams())
    truth = [sense for _, _, sense in SENSE_EXAMPLE]
    assert len(set(column)) == 2 and len(table) == 2
    pairs = set(zip(column, truth, strict=True))
    assert len(pairs) == 2  # each found sense is exactly one true sense
    assert all(name.startswith("bank (") for name in column)
    assert table["silhouette"].iloc[0] >= SenseParams().min_silhouette
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    quoted = re.search(r"come apart with a silhouette of ([\d.]+) \(an integration test", readme)
    assert quoted, "the README no longer quotes the silhouette of bank"
    assert table["silhouette"].iloc[0] == pytest.approx(float(quoted.group(1)), abs=0.005)


@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """A tiny-gpt2 trace of a context file with a repeated target word, grouped by pos and sense."""
    from neuronmap.trace.runner import trace_run

    folder = tmp_path_factory.mktemp("group")
    lines = [{"text": text, "target": target, "note": sense} for text, target, sense in SENSE_EXAMPLE]
    lines += [{"text": "The cat sat on the", "target": "mat", "note": "other"}]
    source = folder / "contexts.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = folder / "run"
    trace_run(out=out, model="tiny-gpt2", contexts=str(source), top_k=5, progress=False, group_by="pos,sense")
    return out


def test_trace_group_by_adds_the_columns(traced):
    contexts = read_parquet(traced / "contexts.parquet")
    assert contexts["pos"].tolist() == ["NOUN"] * 11
    assert contexts["sense"].iloc[-1] is pd.NA or pd.isna(contexts["sense"].iloc[-1])  # "mat" occurs once
    assert contexts["sense"].iloc[:10].str.startswith("bank").all()
    senses = read_parquet(traced / "senses.parquet")
    assert set(senses["word"]) == {"bank"} and senses["contexts"].sum() == 10
    record = RunDir(traced).stage("group")
    assert record["status"] == "complete" and set(record["groupings"]) == {"pos", "sense"}
    assert record["groupings"]["sense"]["params"]["layer"] is None


def test_group_again_is_skipped_unless_forced_or_changed(traced):
    before = (traced / "contexts.parquet").stat().st_mtime_ns
    group_run(traced, "pos,sense")
    assert (traced / "contexts.parquet").stat().st_mtime_ns == before
    record = group_run(traced, "sense", sense=SenseParams(min_contexts=20))
    assert record["sense"]["summary"]["words"] == 0  # no word occurs 20 times: no senses at all
    assert read_parquet(traced / "contexts.parquet")["sense"].isna().all()
    group_run(traced, "sense", force=True)
    assert read_parquet(traced / "contexts.parquet")["sense"].notna().sum() == 10


def test_a_column_from_the_contexts_is_never_overwritten(traced, tmp_path):
    run = shutil.copytree(traced, tmp_path / "run")
    rd = RunDir(run)
    manifest = rd.manifest()
    del manifest["stages"]["group"]  # as if the contexts file had brought its own pos column
    rd.write_manifest(manifest)
    with pytest.raises(NeuronmapError, match="already has a 'pos' column that came with the contexts"):
        group_run(run, "pos")


def test_each_token_events_get_the_part_of_speech_of_their_word(tmp_path):
    import spacy

    from neuronmap.contexts.grouping import SPACY_MODEL, group_run
    from neuronmap.trace.runner import trace_run

    docs = tmp_path / "docs.txt"
    docs.write_text(
        "The old bank of the river flooded in spring.\nShe will bank the cheque at the bank tomorrow.\n"
    )
    trace_run(
        out=tmp_path / "run",
        model="tiny-gpt2",
        contexts=str(docs),
        each_token=True,
        min_prefix=2,
        progress=False,
    )
    group_run(tmp_path / "run", "pos")
    events = read_parquet(tmp_path / "run" / "contexts.parquet")
    texts = docs.read_text().splitlines()
    nlp = spacy.load(SPACY_MODEL)
    for row in events.itertuples():
        text = texts[row.doc_id]
        first = (
            row.char_start
            + len(text[row.char_start : row.char_end])
            - len(text[row.char_start : row.char_end].lstrip())
        )
        word = next(t for t in nlp(text) if t.idx <= first < t.idx + len(t))  # the word the target starts in
        assert row.pos == word.pos_, (text[: row.char_end], row.pos, word.pos_)
    with pytest.raises(NeuronmapError, match="an each-token run takes --group-by pos"):
        group_run(tmp_path / "run", "sense")
