"""Faults: kill -9 at random points of trace, map, stats, outliers train, edit, causal-trace and study; a full
disk; two writers of one run.

The commands run in children forked by ``fault_zygote.py`` (neuronmap imported once), on tiny models. A kill
lands either on a random file event (just before or just after a finished file or folder is renamed into place,
the moments a half-written output could be mistaken for a whole one) or after a random time. After the kills the
same command runs again and must finish with outputs equal to those of an uninterrupted run (JSON apart from its
wall-clock fields). The same helper, started with another hash seed, gives the determinism test its second run.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from bad_inputs import hparams, labelled_rows
from hardening_helpers import Zygote, comparable, run_cli, snapshot

ROUNDS = 2  # rounds per stage; each round kills twice (one file event, one random time) and then finishes
KILLS = {"survived": 0, "attempted": 0}
KILL_STAGES = [
    "trace",
    "trace-events",
    "map",
    "stats",
    "outliers",
    "edit-eval",
    "edit",
    "causal-trace",
    "study",
]


# The commands (after the options naming input files), on tiny models; {d} is the stage's folder.
TRACE = "--model tiny-gpt2 --out {d}/run --keep all --part-size 3 --batch-size 3 --top-k 12 --threads 1"
# each token of each corpus line an event; one window per part, so a kill lands between parts
EVENTS = "--each-token --method direct --min-prefix 4 --model tiny-gpt2 --out {d}/run --part-size 1 --top-k 8 --threads 1"
MAP = "map {d}/run --null-samples 3 --stability-seeds 1 --export graphml,gexf"
STATS = "--model tiny-gpt2 --layer 0,1 --tokens 300 --max-length 24 --threads 1"
TRAIN = "--out {d}/cls --encoder tiny-bert --epochs 4 --batch-size 16 --hidden 16 --seed 3 --threads 1"
EDIT_EVAL = "--model tiny-gpt2 --out {d}/eval --limit 2 --gen-length 12 --threads 1"
FACT = ["--model", "tiny-gpt2", "--prompt", "{{}} is the capital of", "--subject", "Rome", "--threads", "1"]
EDIT = [*FACT, "--target-new", "Paris", "--save", "{d}/edit/delta.safetensors"]
CAUSAL = "--target Italy --out {d}/ct --samples 2 --window 2 --format none"
# Three facts, two sweep layers, two bisection steps; no figures (ten times the cost of the rest here; their bytes
# have their own two-process test in tests/study).
STUDY = "--out {d}/study --limit 3 --keep all --samples 2 --flip-iters 2 --bootstrap 100 --format none --threads 1"


@dataclass
class Stage:
    name: str
    args: list[str]  # with {d} for the stage's folder
    output: str  # what is compared, relative to {d}
    needs_trace: bool = False  # {d}/run starts as a copy of a finished trace

    def argv(self, d: Path) -> list[str]:
        return [a.format(d=d) for a in self.args]

    def env(self, d: Path) -> dict[str, str]:
        return {"NEURONMAP_CACHE": str(d / "cache")}


def _contexts() -> str:
    subjects = ["Rome", "Paris", "Berlin", "Madrid", "Vienna", "Lisbon", "Athens", "Dublin", "Oslo", "Prague"]
    rows = [{"text": f"{s} is the capital city of", "target": "Europe", "subject": s} for s in subjects]
    rows += [{"text": f"The river that flows through {s} is the", "target": "Danube"} for s in subjects]
    return "".join(json.dumps(r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("faults")
    (base / "ctx.jsonl").write_text(_contexts())
    (base / "corpus.txt").write_text(
        "".join(f"Text {i} tells of the old city and its river.\n" for i in range(40))
    )
    (base / "hp.json").write_text(json.dumps(hparams(base / "corpus.txt")))

    (base / "data.csv").write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in labelled_rows(16)))
    ctx, corpus, data, hp = (str(base / n) for n in ("ctx.jsonl", "corpus.txt", "data.csv", "hp.json"))
    stages = {
        "trace": Stage("trace", ["trace", "--contexts", ctx, *TRACE.split()], "run"),
        "trace-events": Stage("trace-events", ["trace", "--contexts", corpus, *EVENTS.split()], "run"),
        "map": Stage("map", MAP.split(), "run", needs_trace=True),
        "stats": Stage("stats", ["stats", "--corpus", corpus, *STATS.split()], "cache/stats"),
        "outliers": Stage("outliers", ["outliers", "train", "--data", data, *TRAIN.split()], "cls"),
        "edit-eval": Stage("edit-eval", ["edit-eval", "--hparams", hp, *EDIT_EVAL.split()], "eval"),
        "edit": Stage("edit", ["edit", "--hparams", hp, *EDIT], "edit"),
        "causal-trace": Stage("causal-trace", ["causal-trace", *FACT, *CAUSAL.split()], "ct"),
        "study": Stage(
            "study",
            ["study", "editability", "--model", "tiny-gpt2", "--hparams", hp, *STUDY.split()],
            "study",
        ),
    }
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    zygotes = [Zygote(base / f"zygote-{n}.log", {**env, "PYTHONHASHSEED": s}) for n, s in ("a1", "b2")]
    yield base, stages, zygotes
    for z in zygotes:
        z.close()
    print(f"\nkills survived: {KILLS['survived']} (of {KILLS['attempted']} attempts)")


def _fresh(base: Path, stage: Stage, name: str) -> Path:
    d = base / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    if stage.needs_trace:
        shutil.copytree(base / "traced", d / "run")
    return d


def _reference(world, stage_name: str, zygote: int = 0) -> tuple[dict, int, float]:
    """Outputs, file events and seconds of an uninterrupted run (cached per helper process)."""
    base, stages, zygotes = world
    key = f"ref-{stage_name}-{zygote}"
    cache = getattr(_reference, "cache", {})
    _reference.cache = cache
    if key not in cache:
        stage = stages[stage_name]
        if stage.needs_trace and not (base / "traced").exists():
            d = _fresh(base, stages["trace"], "traced-src")
            assert zygotes[0].run(stages["trace"].argv(d), stages["trace"].env(d))["code"] == 0
            shutil.copytree(d / "run", base / "traced")
        d = _fresh(base, stage, key)
        started = time.perf_counter()
        status = zygotes[zygote].run(stage.argv(d), stage.env(d), count=str(d / "events"))
        seconds = time.perf_counter() - started
        assert status["code"] == 0, (base / "zygote-a.log").read_text()[-3000:]
        cache[key] = (comparable(d / stage.output), int((d / "events").read_text()), seconds)
    return cache[key]


@pytest.mark.parametrize("stage_name", KILL_STAGES)
def test_kill_and_rerun_equals_uninterrupted(world, stage_name: str) -> None:
    base, stages, zygotes = world
    stage, zygote = stages[stage_name], zygotes[0]
    reference, events, seconds = _reference(world, stage_name)
    rng = random.Random(f"kill-{stage_name}")
    for round_ in range(ROUNDS):
        d = _fresh(base, stage, f"kill-{stage_name}-{round_}")
        argv, env = stage.argv(d), stage.env(d)
        # 1. at a file event: every event of a fresh run is reached, so this kill always lands
        status = zygote.run(argv, env, kill_at=rng.randint(1, events), when=rng.choice(["before", "after"]))
        assert status["signal"] == signal.SIGKILL, status
        KILLS["attempted"] += 1
        KILLS["survived"] += 1
        # 2. after a random time: the resumed run may finish first
        pid = zygote.start(argv, env)
        time.sleep(rng.uniform(0.0, seconds))
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        status = zygote.wait()
        KILLS["attempted"] += 1
        KILLS["survived"] += status["signal"] == signal.SIGKILL
        assert status["code"] in (None, 0), status
        # 3. the same command again (unless the timed run finished) ends with the outputs of an uninterrupted run
        if status["signal"] == signal.SIGKILL:
            status = zygote.run(argv, env)
            assert status["code"] == 0, (base / "zygote-a.log").read_text()[-3000:]
        assert comparable(d / stage.output) == reference, f"{stage_name}: round {round_}"


@pytest.mark.parametrize(
    "stage_name",
    ["trace", "trace-events", "map", "stats", "outliers", "edit-eval", "edit", "causal-trace", "study"],
)
def test_same_seed_same_bytes(world, stage_name: str) -> None:
    """Two runs in two processes with different hash seeds: byte-identical Parquet and safetensors, and JSON
    equal apart from its wall-clock fields (one per stage record)."""
    first, _, _ = _reference(world, stage_name, 0)
    second, _, _ = _reference(world, stage_name, 1)
    assert first == second
    assert any(k.endswith((".parquet", ".safetensors")) for k in first)


# ---- a full disk --------------------------------------------------------------------------------------------
def _disk_full_after(monkeypatch: pytest.MonkeyPatch, n: int, last: int | None = None) -> None:
    """The n-th fsync (a file's data reaching the disk) and every later one (up to ``last``) fail with ENOSPC."""
    real, calls = os.fsync, [0]

    def fsync(fd: int) -> None:
        calls[0] += 1
        if n <= calls[0] <= (last or calls[0]):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _one_line_disk_full(result) -> None:  # type: ignore[no-untyped-def]
    assert result.code == 2, result.err + result.out[-2000:]
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert "No space left on device" in result.err and "disk is full" in result.err


def test_full_disk_during_map_keeps_the_previous_map(world, monkeypatch: pytest.MonkeyPatch) -> None:
    base, stages, _ = world
    _reference(world, "map")
    d = base / "disk-map"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(base / "ref-map-0" / "run", d)
    before = snapshot(d)
    graph = {k: v for k, v in before.items() if k.startswith("graph")}
    monkeypatch.setenv("NEURONMAP_CACHE", str(base / "disk-cache"))
    args = ["map", d, "--null-samples", "0", "--stability-seeds", "0", "--export", "none", "--force"]
    # space runs out while a table is written, and comes back (another process freed it)
    with monkeypatch.context() as patch:
        _disk_full_after(patch, 3, last=3)
        _one_line_disk_full(run_cli(args))
    assert snapshot(d) == before  # the previous map and its manifest record, untouched
    # space runs out for good: run.json cannot be written either, but the previous map's files stand
    with monkeypatch.context() as patch:
        _disk_full_after(patch, 3)
        _one_line_disk_full(run_cli(args))
    assert {k: v for k, v in snapshot(d).items() if k.startswith("graph")} == graph
    assert not [p for p in d.iterdir() if p.name.startswith(".")]
    assert run_cli(args).code == 0  # and with space again, the new map is made


def test_full_disk_during_trace_keeps_finished_parts(world, monkeypatch: pytest.MonkeyPatch) -> None:
    base, stages, _ = world
    reference, _, _ = _reference(world, "trace")
    d = base / "disk-trace"
    shutil.rmtree(d, ignore_errors=True)
    monkeypatch.setenv("NEURONMAP_CACHE", str(base / "disk-cache"))
    with monkeypatch.context() as patch:
        _disk_full_after(patch, 6)
        _one_line_disk_full(run_cli(stages["trace"].argv(d)))
    parts = sorted(p.name for p in (d / "run" / "parts").iterdir())
    assert parts and all(not p.startswith(".") for p in parts)  # whole parts only, no temporaries
    assert not (d / "run" / "scores.parquet").exists()
    result = run_cli(stages["trace"].argv(d))  # space again: the trace resumes and finishes
    assert result.code == 0, result.err
    assert comparable(d / "run") == reference


def test_full_disk_during_outliers_train_keeps_the_old_classifier(
    world, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, stages, _ = world
    _reference(world, "outliers")
    d = base / "disk-cls"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(base / "ref-outliers-0" / "cls", d)
    before = snapshot(d)
    monkeypatch.setenv("NEURONMAP_CACHE", str(base / "ref-outliers-0" / "cache"))
    argv = [a if a != "{d}/cls" else str(d) for a in stages["outliers"].args]
    _disk_full_after(monkeypatch, 2)  # the head is written, the split table is not
    _one_line_disk_full(run_cli([*argv, "--seed", "4", "--force"]))
    assert snapshot(d) == before


def test_full_disk_during_stats_leaves_no_partial_file(world, monkeypatch: pytest.MonkeyPatch) -> None:
    base, stages, _ = world
    d = base / "disk-stats"
    shutil.rmtree(d, ignore_errors=True)
    monkeypatch.setenv("NEURONMAP_CACHE", str(d / "cache"))
    run_cli(["models"])  # fills the cache's tokenizer copy before the disk fills up
    _disk_full_after(monkeypatch, 1)
    _one_line_disk_full(run_cli(stages["stats"].argv(d)))
    assert not list((d / "cache").glob("stats/**/*.safetensors")) and not list((d / "cache").rglob(".*tmp*"))


# ---- two writers --------------------------------------------------------------------------------------------
HOLDER = """
import sys, time
from neuronmap.rundir import RunDir
with RunDir(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(120)
"""


def test_second_writer_is_refused(world) -> None:
    base, stages, _ = world
    _reference(world, "map")
    d = base / "locked"
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(base / "traced", d / "run")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(d / "run")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(d)
        for args in (
            stages["trace"].argv(d),
            ["map", d / "run", "--null-samples", "0", "--stability-seeds", "0"],
        ):
            result = run_cli(args)
            assert result.code == 2 and result.err.count("\n") == 1, result.err
            assert f"another neuronmap process (pid {holder.pid}) is writing this run" in result.err
        assert snapshot(d) == before
    finally:
        holder.kill()
        holder.wait()
    # the holder died without removing its lock: the next command takes the stale lock over
    assert (d / "run" / ".lock").exists()
    result = run_cli(["map", d / "run", "--null-samples", "0", "--stability-seeds", "0", "--export", "none"])
    assert result.code == 0, result.err
    assert not (d / "run" / ".lock").exists()
