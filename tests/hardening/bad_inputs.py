"""The bad-input table: every mistake a new user makes, for every command where it applies.

Each case is the command line (placeholders below), the files to create first, and a fragment of the one line
the command must print on stderr. ``test_bad_input.py`` runs each and checks: exit code 2, exactly one stderr
line, no traceback, and nothing created or changed in the case's folder (``run.json`` may only record that
the failing stage failed).

Placeholders: ``{d}`` the case's own folder; ``{base}`` the shared fixture folder; ``{run}`` a copy of a traced
run (tiny-gpt2); ``{mapped}`` a copy of a traced and mapped run; ``{cls}`` a copy of a trained classifier
(tiny-bert); ``{odd}`` a local model folder of an unsupported architecture (OPT); ``{bertok}`` a local
tiny-gpt2 folder with a WordPiece tokenizer (which drops combining accents, so some targets encode to nothing);
``{data}`` a labelled CSV for the outlier wing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DIR = object()  # a files value: make a folder with this name

# The traced fixture run; a case that traces it again with these arguments must pass the parameter check.
TRACE_ARGS = ["--model", "tiny-gpt2", "--contexts", "{base}/ctx.jsonl", "--keep", "all", "--top-k", "20",
              "--threads", "1"]  # fmt: skip
MAP_FAST = ["--null-samples", "0", "--stability-seeds", "0", "--export", "none"]
TRAIN_FAST = [
    "--encoder",
    "tiny-bert",
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--hidden",
    "16",
    "--threads",
    "1",
]
EDIT_FAST = ["--model", "tiny-gpt2", "--threads", "1"]

GOOD_CONTEXTS = "".join(
    json.dumps(r) + "\n"
    for r in (
        {"text": "The Eiffel Tower is in the city of", "target": "Paris", "subject": "Eiffel Tower"},
        {"text": "Rome is the capital of", "target": "Italy", "subject": "Rome"},
        {"text": "Water is made of hydrogen and", "target": "oxygen"},
        {"text": "The Colosseum stands in", "target": "Rome", "subject": "Colosseum"},
    )
)


@dataclass
class Case:
    id: str
    args: list[str]
    expect: str  # a fragment of the stderr line (placeholders allowed)
    files: dict[str, object] = field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None  # run on the case folder after the copies and files


# ---- run-directory changes ----------------------------------------------------------------------------------
def _manifest(run: Path, change: Callable[[dict], None]) -> None:
    data = json.loads((run / "run.json").read_text())
    change(data)
    (run / "run.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def old_version(d: Path) -> None:
    for name in ("run", "mapped"):
        if (d / name).is_dir():
            _manifest(d / name, lambda m: m.update(neuronmap_version="0.0.1", run_format=0))


def trace_running(d: Path) -> None:
    _manifest(d / "run", lambda m: m["stages"]["trace"].update(status="running"))


def _scores(value: float) -> Callable[[Path], None]:
    def change(d: Path) -> None:
        path = d / "run" / "scores.parquet"
        table = pq.read_table(path)
        score = table["score"].to_numpy().copy()
        score[1] = value
        index = table.schema.get_field_index("score")
        table = table.set_column(index, "score", pa.array(score, type=table.schema.field(index).type))
        pq.write_table(table, path)

    return change


def corrupt_scores(d: Path) -> None:
    (d / "run" / "scores.parquet").write_bytes(b"PAR1 this is not a parquet file")


def other_model_map(d: Path) -> None:
    # a run whose manifest says another model than its tables: the map must not build a graph from it
    _manifest(d / "run", lambda m: m["model"].update(n_layers=1))


# ---- files --------------------------------------------------------------------------------------------------
BAD_JSONL = '{"text": "a b", "target": "c"}\n{"text": "a b", "target": \n'
BAD_CSV = "text,target\nThe capital of France is,Paris\nRome is the capital of,Italy,extra\n"
BAD_TSV = "text\ttarget\nThe capital is\tParis\nno target here\n"
BAD_JSON = '[\n  {"text": "a b", "target": "c"},\n  {"text": "a b" "target": "c"}\n]\n'
EMPTY_TARGET = (
    '{"text": "The capital of France is", "target": "Paris"}\n{"text": "Rome is in", "target": ""}\n'
)
BLANK_TARGET = '{"text": "The capital of France is", "target": "   "}\n'
SUBJECT_MISSING = '{"text": "Rome is the capital of", "target": "Italy", "subject": "Paris"}\n'
NO_SUBJECT = '{"text": "Rome is the capital of", "target": "Italy"}\n'
ACCENT_TARGET = '{"text": "The capital of France is", "target": "\\u0301"}\n'
LABELS_NO_LABEL = "text,category\n" + "".join(f"text number {i},{i % 2}\n" for i in range(20))
LABELS_NO_TEXT = "sentence,label\n" + "".join(f"text number {i},{i % 2}\n" for i in range(20))
LABELS_BAD_ROW = "text,label\nfirst text,a\nsecond text,b\nthird text,a,extra\n"
LABELS_BAD_JSONL = '{"text": "first", "label": "a"}\n{"text": "second", "label": \n'
LABELS_ONE_CLASS = "text,label\n" + "".join(f"text number {i},same\n" for i in range(20))
BAD_CORPUS_JSONL = '{"text": "a text"}\n{"text": \n'
COUNTERFACT_BAD = '[\n  {"case_id": 0, "requested_rewrite": {"prompt": "{} is in", "subject": "Rome"}}\n]\n'
NAN_SCORES = float("nan")

# ---- the table ------------------------------------------------------------------------------------------------
TRACE = ["trace", "--model", "tiny-gpt2", "--out", "{d}/out", "--keep", "all", "--threads", "1"]
CT = ["causal-trace", *EDIT_FAST, "--out", "{d}/out", "--samples", "2", "--window", "1", "--format", "none"]
STATS = ["stats", *EDIT_FAST, "--tokens", "50", "--max-length", "16"]
EDIT = ["edit", *EDIT_FAST, "--save", "{d}/out/delta.safetensors"]
EVAL = ["edit-eval", *EDIT_FAST, "--out", "{d}/out", "--limit", "1", "--no-fluency"]
STUDY = [
    "study",
    "editability",
    "--model",
    "tiny-gpt2",
    "--out",
    "{d}/out",
    "--threads",
    "1",
    "--format",
    "none",
]
TRAIN = ["outliers", "train", *TRAIN_FAST, "--out", "{d}/out"]
EVALUATE = ["outliers", "evaluate", *TRAIN_FAST, "--seeds", "0", "--far", "none", "--out", "{d}/out"]
REFINE = [
    "outliers",
    "refine",
    *TRAIN_FAST,
    "--seeds",
    "0",
    "--initial",
    "6",
    "--budget",
    "2",
    "--out",
    "{d}/out",
]

CASES: list[Case] = [
    # -- trace ---------------------------------------------------------------------------------------------------
    Case("trace-missing-file", [*TRACE, "--contexts", "{d}/nope.jsonl"], "{d}/nope.jsonl: no such file"),
    Case("trace-unreadable-dir", [*TRACE, "--contexts", "{d}/folder.jsonl"], "is a directory", {"folder.jsonl": DIR}),
    Case("trace-not-utf8", [*TRACE, "--contexts", "{d}/latin.txt"], "latin.txt: line 2: not valid UTF-8",
         {"latin.txt": b"first line\ncaf\xe9 au lait\n"}),
    Case("trace-unsupported-suffix", [*TRACE, "--contexts", "{d}/ctx.xlsx"], "unsupported file type '.xlsx'",
         {"ctx.xlsx": "x"}),
    Case("trace-malformed-jsonl", [*TRACE, "--contexts", "{d}/bad.jsonl"], "bad.jsonl: line 2: malformed JSON",
         {"bad.jsonl": BAD_JSONL}),
    Case("trace-malformed-csv", [*TRACE, "--contexts", "{d}/bad.csv"], "bad.csv: line 3: 3 cells",
         {"bad.csv": BAD_CSV}),
    Case("trace-malformed-tsv", [*TRACE, "--contexts", "{d}/bad.tsv"], "bad.tsv: line 3: 1 cells",
         {"bad.tsv": BAD_TSV}),
    Case("trace-malformed-json", [*TRACE, "--contexts", "{d}/bad.json"], "bad.json: line 3: malformed JSON",
         {"bad.json": BAD_JSON}),
    Case("trace-csv-no-target-column", [*TRACE, "--contexts", "{d}/c.csv"], "c.csv: line 1: the header has no 'target'",
         {"c.csv": "text,answer\nRome is in,Italy\n"}),
    Case("trace-empty-file", [*TRACE, "--contexts", "{d}/empty.jsonl"], "no contexts in {d}/empty.jsonl",
         {"empty.jsonl": ""}),
    Case("trace-blank-lines", [*TRACE, "--contexts", "{d}/blank.txt"], "no contexts in {d}/blank.txt",
         {"blank.txt": "\n   \n\n"}),
    Case("trace-empty-builtin-slice", [*TRACE, "--contexts", "builtin:facts", "--limit", "0"],
         "--limit must be at least 1"),
    Case("trace-empty-target", [*TRACE, "--contexts", "{d}/t.jsonl"], "t.jsonl: line 2: empty target",
         {"t.jsonl": EMPTY_TARGET}),
    Case("trace-blank-target", [*TRACE, "--contexts", "{d}/t.jsonl"], "t.jsonl: line 1: empty target",
         {"t.jsonl": BLANK_TARGET}),
    Case("trace-empty-target-txt", [*TRACE, "--contexts", "{d}/t.txt"], "t.txt: line 1: empty target",
         {"t.txt": "The capital of France is\t\n"}),
    Case("trace-target-not-encodable", [*TRACE[:2], "{bertok}", *TRACE[3:], "--contexts", "{d}/t.jsonl"],
         "encodes to no tokens", {"t.jsonl": ACCENT_TARGET}),
    Case("trace-subject-not-in-text", [*TRACE, "--contexts", "{d}/s.jsonl"],
         "s.jsonl: line 1: subject 'Paris' does not occur in the text", {"s.jsonl": SUBJECT_MISSING}),
    Case("trace-causal-without-subject", [*TRACE, "--method", "causal", "--contexts", "{d}/s.jsonl"],
         "has no subject; the causal method needs one", {"s.jsonl": NO_SUBJECT}),
    Case("trace-unknown-builtin", [*TRACE, "--contexts", "builtin:nope"], "builtin"),
    # Longer than the window (tiny models: 256 positions): refused with the line, its length and the window.
    Case("trace-context-past-window", [*TRACE, "--contexts", "{d}/long.jsonl"],
         "long.jsonl: line 2: 360 tokens, longer than the model's window of 256 (--truncate left keeps the last 256)",
         {"long.jsonl": NO_SUBJECT + json.dumps({"text": " ".join(f"w{i}" for i in range(180)), "target": "x"}) + "\n"}),
    Case("trace-200k-tokens", [*TRACE[:2], "tiny-llama", *TRACE[3:], "--contexts", "{d}/huge.txt"],
         "huge.txt: line 1: ", {"huge.txt": " ".join(f"word{i % 997} is followed by" for i in range(40000)) + "\tx\n"}),
    Case("trace-bad-truncate", [*TRACE, "--contexts", "{base}/ctx.jsonl", "--truncate", "right"],
         "--truncate must be left"),
    Case("trace-bad-max-memory", [*TRACE, "--contexts", "{base}/ctx.jsonl", "--max-memory", "lots"],
         "--max-memory takes a size such as 6GB, 800MB or 50%"),
    Case("trace-no-room-in-memory", [*TRACE, "--contexts", "{base}/ctx.jsonl", "--max-memory", "2MB"],
         "ctx.jsonl: line 1: "),
    Case("trace-each-token-bad-method", [*TRACE, "--each-token", "--contexts", "builtin:wiki:2", "--method", "causal"],
         "--each-token takes --method direct, attribution, activation"),
    Case("trace-unknown-model", [*TRACE[:2], "no-such-model", *TRACE[3:], "--contexts", "{base}/ctx.jsonl"],
         "could not load 'no-such-model'"),
    Case("trace-model-path-missing", [*TRACE[:2], "{d}/nope/model.bin", *TRACE[3:]], "no such model folder"),
    Case("trace-unsupported-architecture", [*TRACE[:2], "{odd}", *TRACE[3:], "--contexts", "{base}/ctx.jsonl"],
         "unsupported architecture 'opt'; supported: gpt2"),
    Case("trace-encoder-model", [*TRACE[:2], "tiny-bert", *TRACE[3:], "--contexts", "{base}/ctx.jsonl"],
         "is an encoder"),
    Case("trace-layer-out-of-range", [*TRACE, "--contexts", "{base}/ctx.jsonl", "--layers", "5"],
         "layer 5 out of range: this model has layers 0..1"),
    Case("trace-negative-layer-out-of-range", [*TRACE, "--contexts", "{base}/ctx.jsonl", "--layers", "-3"],
         "layer -1 out of range"),
    Case("trace-layers-not-integers", [*TRACE, "--contexts", "{base}/ctx.jsonl", "--layers", "a,b"],
         "--layers takes comma-separated integers"),
    Case("trace-run-from-other-version", ["trace", "--out", "{run}", *TRACE_ARGS], "made by neuronmap 0.0.1",
         prepare=old_version),
    Case("trace-run-for-other-model",
         ["trace", "--out", "{run}", *TRACE_ARGS[:1], "tiny-llama", *TRACE_ARGS[2:]],
         "holds a trace with other parameters (model: 'tiny-gpt2' -> 'tiny-llama')"),
    Case("trace-markup-in-file-name", [*TRACE, "--contexts", "{d}/[/]x.jsonl"], "{d}/[/]x.jsonl: no such file"),
    Case("trace-missing-option", ["trace", "--model", "tiny-gpt2"], "Missing option '--out'"),
    Case("trace-unknown-method", [*TRACE, "--contexts", "{base}/ctx.jsonl", "--method", "magic"],
         "unknown method 'magic'"),
    # -- map -----------------------------------------------------------------------------------------------------
    Case("map-missing-run", ["map", "{d}/nope", *MAP_FAST], "not a neuronmap run (no run.json)"),
    Case("map-not-a-run", ["map", "{d}/folder", *MAP_FAST], "not a neuronmap run", {"folder": DIR}),
    Case("map-corrupt-manifest", ["map", "{d}/r", *MAP_FAST], "corrupt manifest", {"r/run.json": "{not json"}),
    Case("map-trace-unfinished", ["map", "{run}", *MAP_FAST], "stage 'trace' has not completed",
         prepare=trace_running),
    Case("map-run-from-other-version", ["map", "{run}", *MAP_FAST], "made by neuronmap 0.0.1", prepare=old_version),
    Case("map-run-for-other-model", ["map", "{run}", *MAP_FAST], "a layer lies outside 0..0",
         prepare=other_model_map),
    Case("map-corrupt-scores", ["map", "{run}", *MAP_FAST], "scores.parquet: not a readable Parquet table",
         prepare=corrupt_scores),
    Case("map-nan-score", ["map", "{run}", *MAP_FAST], "scores.parquet: 1 score is NaN or infinite",
         prepare=_scores(NAN_SCORES)),
    Case("map-inf-score", ["map", "{run}", *MAP_FAST], "scores.parquet: 1 score is NaN or infinite",
         prepare=_scores(float("inf"))),
    Case("map-unknown-method", ["map", "{run}", *MAP_FAST, "--method", "magic"], "--method 'magic': expected one of"),
    Case("map-unknown-option", ["map", "{run}", "--colour", "red"], "No such option"),
    Case("map-other-options", ["map", "{mapped}", *MAP_FAST, "--resolution", "2"], "already mapped with other parameters"),
    # -- explore, figures, group ---------------------------------------------------------------------------------
    Case("explore-missing-run", ["explore", "{d}/nope"], "not a neuronmap run"),
    Case("explore-not-mapped", ["explore", "{run}"], "neuronmap map"),
    Case("explore-run-from-other-version", ["explore", "{mapped}"], "made by neuronmap 0.0.1", prepare=old_version),
    Case("figures-missing-run", ["figures", "{d}/nope", "--out", "{d}/figs"], "not a neuronmap run"),
    Case("figures-not-mapped", ["figures", "{run}", "--out", "{d}/figs"], "neuronmap map"),
    Case("figures-bad-format", ["figures", "{mapped}", "--format", "gif", "--out", "{d}/figs"], "--format takes png, svg"),
    Case("group-missing-run", ["group", "{d}/nope", "--by", "pos"], "not a neuronmap run"),
    Case("group-unknown-grouping", ["group", "{run}", "--by", "colour"], "colour"),
    Case("group-layer-out-of-range", ["group", "{run}", "--by", "sense", "--layer", "7", "--threads", "1"],
         "--layer 7 is out of range"),
    Case("group-run-from-other-version", ["group", "{run}", "--by", "sense", "--threads", "1"],
         "made by neuronmap 0.0.1", prepare=old_version),
    # -- causal-trace --------------------------------------------------------------------------------------------
    Case("ct-unknown-model", ["causal-trace", "--model", "no-such-model", "--out", "{d}/out", "--prompt", "{{}} is in",
                              "--subject", "Rome"], "could not load 'no-such-model'"),
    Case("ct-unsupported-architecture", ["causal-trace", "--model", "{odd}", "--out", "{d}/out", "--prompt",
                                         "{{}} is in", "--subject", "Rome"], "unsupported architecture 'opt'"),
    Case("ct-subject-not-in-prompt", [*CT, "--prompt", "The city is in", "--subject", "Rome"],
         "subject 'Rome' is not in the prompt"),
    Case("ct-empty-subject", [*CT, "--prompt", "{{}} is in", "--subject", " "], "the subject is empty"),
    Case("ct-empty-target", [*CT, "--prompt", "{{}} is in", "--subject", "Rome", "--target", ""], "target"),
    Case("ct-target-not-encodable", ["causal-trace", "--model", "{bertok}", "--threads", "1", "--out", "{d}/out",
                                     "--prompt", "{{}} is in", "--subject", "Rome", "--target", "\u0301",
                                     "--format", "none", "--samples", "2"], "no tokens"),
    Case("ct-layer-out-of-range", [*CT, "--prompt", "{{}} is in", "--subject", "Rome", "--layers", "9"],
         "layer 9 out of range"),
    Case("ct-missing-facts", [*CT, "--facts", "{d}/nope.jsonl"], "{d}/nope.jsonl: no such file"),
    Case("ct-malformed-facts", [*CT, "--facts", "{d}/bad.jsonl"], "bad.jsonl: line 2: malformed JSON",
         {"bad.jsonl": BAD_JSONL}),
    Case("ct-facts-subject-not-in-text", [*CT, "--facts", "{d}/s.jsonl"], "s.jsonl: line 1: subject 'Paris'",
         {"s.jsonl": SUBJECT_MISSING}),
    Case("ct-facts-empty", [*CT, "--facts", "{d}/e.jsonl"], "no contexts in", {"e.jsonl": "\n"}),
    # -- stats ---------------------------------------------------------------------------------------------------
    Case("stats-unknown-model", ["stats", "--model", "no-such-model"], "could not load 'no-such-model'"),
    Case("stats-unsupported-architecture", ["stats", "--model", "{odd}", "--threads", "1"],
         "unsupported architecture 'opt'"),
    Case("stats-layer-out-of-range", [*STATS, "--layer", "4", "--corpus", "{base}/corpus.txt"], "layer 4 out of range"),
    Case("stats-missing-corpus", [*STATS, "--layer", "0", "--corpus", "{d}/nope.txt"], "nope.txt: no such corpus file"),
    Case("stats-corpus-is-a-folder", [*STATS, "--layer", "0", "--corpus", "{d}/c.txt"], "c.txt", {"c.txt": DIR}),
    Case("stats-empty-corpus", [*STATS, "--layer", "0", "--corpus", "{d}/c.txt"], "the corpus has no text",
         {"c.txt": "\n\n"}),
    Case("stats-malformed-corpus", [*STATS, "--layer", "0", "--corpus", "{d}/c.jsonl"], "c.jsonl: line 2",
         {"c.jsonl": BAD_CORPUS_JSONL}),
    Case("stats-not-utf8-corpus", [*STATS, "--layer", "0", "--corpus", "{d}/c.txt"], "c.txt: line 1: not valid UTF-8",
         {"c.txt": b"caf\xe9\n"}),
    # -- edit ----------------------------------------------------------------------------------------------------
    Case("edit-subject-not-in-prompt", [*EDIT, "--subject", "Rome", "--prompt", "The city is in", "--target-new", "Paris"],
         "subject 'Rome' is not in the prompt"),
    Case("edit-empty-target", [*EDIT, "--subject", "Rome", "--prompt", "{{}} is in", "--target-new", ""],
         "the new target is empty"),
    Case("edit-unknown-model", ["edit", "--model", "no-such-model", "--subject", "Rome", "--prompt", "{{}} is in",
                                "--target-new", "Paris"], "could not load 'no-such-model'"),
    Case("edit-layer-out-of-range", [*EDIT, "--subject", "Rome", "--prompt", "{{}} is in", "--target-new", "Paris",
                                     "--layer", "3", "--hparams", "{base}/hp.json"], "layer 3 out of range"),
    Case("edit-apply-missing", [*EDIT, "--subject", "Rome", "--prompt", "{{}} is in", "--target-new", "Paris",
                                "--apply", "{d}/nope.safetensors"], "nope.safetensors: no such edit file"),
    Case("edit-apply-not-an-edit", [*EDIT, "--subject", "Rome", "--prompt", "{{}} is in", "--target-new", "Paris",
                                    "--apply", "{d}/x.safetensors"], "not a neuronmap edit",
         {"x.safetensors": b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}   "}),
    Case("edit-bad-save-as", [*EDIT, "--subject", "Rome", "--prompt", "{{}} is in", "--target-new", "Paris",
                              "--save-as", "zip"], "--save-as takes delta or model"),
    # -- edit-eval -----------------------------------------------------------------------------------------------
    Case("eval-missing-facts", [*EVAL, "--facts", "{d}/nope.json"], "nope.json"),
    Case("eval-malformed-facts", [*EVAL, "--facts", "{d}/cf.json"], "cf.json", {"cf.json": BAD_JSON}),
    Case("eval-incomplete-record", [*EVAL, "--facts", "{d}/cf.json"], "cf.json", {"cf.json": COUNTERFACT_BAD}),
    Case("eval-unknown-model", ["edit-eval", "--model", "no-such-model", "--out", "{d}/out"], "could not load 'no-such-model'"),
    Case("eval-layer-out-of-range", [*EVAL, "--layer", "5", "--hparams", "{base}/hp.json"], "layer 5 out of range"),
    Case("eval-empty-slice", [*EVAL, "--offset", "100000", "--hparams", "{base}/hp.json"], "offset 100000 leaves none"),
    # -- study -------------------------------------------------------------------------------------------------------
    Case("study-unknown-model", [*STUDY[:2], "--model", "no-such-model", *STUDY[4:]], "could not load 'no-such-model'"),
    Case("study-missing-facts", [*STUDY, "--facts", "{d}/nope.json"], "nope.json"),
    Case("study-malformed-facts", [*STUDY, "--facts", "{d}/cf.json"], "cf.json", {"cf.json": BAD_JSON}),
    Case("study-layer-out-of-range", [*STUDY, "--layers", "9", "--hparams", "{base}/hp.json"], "layer 9 out of range"),
    Case("study-bad-keep", [*STUDY, "--keep", "maybe"], "--keep takes known, rank, all"),
    Case("study-too-few-known-facts", [*STUDY, "--limit", "3", "--hparams", "{base}/hp.json"], "the study needs at least 2"),
    Case("study-report-no-study", ["study", "report", "--out", "{d}/out"], "not a run folder (no run.json)"),
    # -- outliers ------------------------------------------------------------------------------------------------
    Case("train-missing-file", [*TRAIN, "--data", "{d}/nope.csv"], "nope.csv"),
    Case("train-folder-as-file", [*TRAIN, "--data", "{d}/f.csv"], "f.csv", {"f.csv": DIR}),
    Case("train-malformed-csv", [*TRAIN, "--data", "{d}/bad.csv"], "bad.csv: line 4", {"bad.csv": LABELS_BAD_ROW}),
    Case("train-malformed-jsonl", [*TRAIN, "--data", "{d}/bad.jsonl"], "bad.jsonl: line 2",
         {"bad.jsonl": LABELS_BAD_JSONL}),
    Case("train-missing-label-column", [*TRAIN, "--data", "{d}/l.csv"], "'label'", {"l.csv": LABELS_NO_LABEL}),
    Case("train-missing-text-column", [*TRAIN, "--data", "{d}/l.csv"], "'text'", {"l.csv": LABELS_NO_TEXT}),
    Case("train-named-label-column-missing", [*TRAIN, "--data", "{data}", "--label-column", "topic"], "'topic'"),
    Case("train-empty-file", [*TRAIN, "--data", "{d}/e.csv"], "e.csv", {"e.csv": ""}),
    Case("train-one-class", [*TRAIN, "--data", "{d}/one.csv"], "a classifier needs at least 2",
         {"one.csv": LABELS_ONE_CLASS}),
    Case("train-unknown-encoder", [*TRAIN, "--data", "{data}", "--encoder", "no-such-model"],
         "could not load 'no-such-model'"),
    Case("train-unknown-holdout", [*TRAIN, "--data", "{data}", "--holdout", "nope"], "nope"),
    Case("train-existing-classifier", [*TRAIN[:-2], "--out", "{cls}", "--data", "{data}"], "already holds a classifier"),
    Case("evaluate-missing-label-column", [*EVALUATE, "--data", "{d}/l.csv"], "'label'", {"l.csv": LABELS_NO_LABEL}),
    Case("evaluate-missing-file", [*EVALUATE, "--data", "{d}/nope.jsonl"], "nope.jsonl"),
    Case("refine-missing-label-column", [*REFINE, "--data", "{d}/l.csv"], "'label'", {"l.csv": LABELS_NO_LABEL}),
    Case("refine-malformed-csv", [*REFINE, "--data", "{d}/bad.csv"], "bad.csv: line 4", {"bad.csv": LABELS_BAD_ROW}),
    Case("synthesize-missing-model", ["outliers", "synthesize", "--model", "{d}/nope", "--class", "a", "--out", "{d}/out"],
         "not a trained classifier"),
    Case("synthesize-unknown-class", ["outliers", "synthesize", "--model", "{cls}", "--class", "nope", "--out", "{d}/out",
                                      "--no-figure", "--threads", "1"], "no class 'nope'"),
    Case("synthesize-missing-pool", ["outliers", "synthesize", "--model", "{cls}", "--class", "animals", "--pool",
                                     "{d}/nope.csv", "--out", "{d}/out", "--no-figure", "--threads", "1"], "nope.csv"),
    Case("synthesize-pool-without-text-column", ["outliers", "synthesize", "--model", "{cls}", "--class", "animals",
                                                 "--pool", "{d}/p.csv", "--out", "{d}/out", "--no-figure",
                                                 "--threads", "1"], "'text'", {"p.csv": LABELS_NO_TEXT}),
    # -- models --------------------------------------------------------------------------------------------------
    Case("models-prepare-unknown", ["models", "--prepare", "no-such-model"], "unknown embedded model 'no-such-model'"),
]  # fmt: skip


def good_corpus() -> str:
    return "".join(f"Sentence number {i} is about the city of Rome and its history.\n" for i in range(12))


def hparams(corpus: Path) -> dict:
    return {
        "layer": 1,
        "v_num_grad_steps": 2,
        "context_template_length_params": [[3, 1]],
        "mom2_corpus": str(corpus),
        "mom2_n_tokens": 50,
        "mom2_max_length": 16,
        "mom2_ridge": 1e-3,
    }


def labelled_rows(per_class: int = 12) -> list[tuple[str, str]]:
    words = {"animals": "cat dog horse cow", "tools": "saw drill axe rake", "food": "bread rice soup cake"}
    rng = np.random.default_rng(0)
    rows = []
    for i in range(per_class):
        for label, vocab in words.items():
            picked = rng.choice(vocab.split(), size=5)
            rows.append((" ".join(picked) + f" {i}", label))
    return rows
