"""Every case of ``bad_inputs.CASES``: exit code 2, one line on stderr, no traceback, no partial output.

Each case runs twice: in this process (``neuronmap.cli.main``, stderr a string buffer) and in a child forked from
a helper that imported neuronmap once (``fault_zygote.py``), whose file descriptors 1 and 2 are files, so what a
library writes there (warnings, logging, C++ notes) counts as a user would see it. The helper's own output while
importing must be empty too, and one case per command family runs in a new ``neuronmap`` process. The fixtures
(a traced run, a mapped run, a classifier, odd model folders) are built once, on first use, and each case works
on its own copies.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from bad_inputs import (
    CASES,
    DIR,
    GOOD_CONTEXTS,
    MAP_FAST,
    TRACE_ARGS,
    TRAIN_FAST,
    Case,
    good_corpus,
    hparams,
    labelled_rows,
)
from hardening_helpers import Result, Zygote, run_cli, snapshot

COPIED = ("run", "mapped", "cls")  # fixtures a case changes: each case gets its own copy
# Cases run in a new process too (the first through python -m, the others by the console script): one per command
# family, past the argument checks where the family has such a case, so that the model and its libraries load.
FRESH = ("trace-malformed-jsonl", "trace-layer-out-of-range", "map-nan-score", "explore-not-mapped",
         "group-layer-out-of-range", "ct-layer-out-of-range", "stats-layer-out-of-range", "edit-layer-out-of-range",
         "study-layer-out-of-range", "synthesize-unknown-class", "models-prepare-unknown")  # fmt: skip


class Fixtures:
    """The shared inputs, each built the first time a case needs it."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.built: dict[str, Path] = {}
        (base / "ctx.jsonl").write_text(GOOD_CONTEXTS)
        (base / "corpus.txt").write_text(good_corpus())
        (base / "hp.json").write_text(json.dumps(hparams(base / "corpus.txt")))

    def get(self, name: str) -> Path:
        if name not in self.built:
            self.built[name] = getattr(self, f"_{name}")()
        return self.built[name]

    def _ok(self, args: list[str]) -> None:
        result = run_cli(args)
        assert result.code == 0, result.err

    def _run(self) -> Path:
        path = self.base / "run"
        self._ok(["trace", "--out", str(path), *[a.format(base=self.base) for a in TRACE_ARGS]])
        return path

    def _mapped(self) -> Path:
        path = self.base / "mapped"
        shutil.copytree(self.get("run"), path)
        self._ok(["map", str(path), *MAP_FAST])
        return path

    def _data(self) -> Path:
        import csv

        path = self.base / "data.csv"
        with open(path, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "label"])
            writer.writerows(labelled_rows())
        return path

    def _cls(self) -> Path:
        path = self.base / "cls"
        self._ok(["outliers", "train", "--data", str(self.get("data")), "--out", str(path), *TRAIN_FAST])
        return path

    def _odd(self) -> Path:
        """An OPT model (an architecture without a neuron adapter) with the GPT-2 tokenizer."""
        from transformers import OPTConfig, OPTForCausalLM

        from neuronmap.models.tiny import gpt2_tokenizer

        path = self.base / "odd"
        config = OPTConfig(vocab_size=50272, hidden_size=16, num_hidden_layers=2, ffn_dim=32,
                           num_attention_heads=2, max_position_embeddings=64, word_embed_proj_dim=16)  # fmt: skip
        OPTForCausalLM(config).save_pretrained(path)
        gpt2_tokenizer().save_pretrained(path)
        return path

    def _bertok(self) -> Path:
        """tiny-gpt2 with a WordPiece tokenizer: accents are stripped, so some targets encode to nothing."""
        from neuronmap.models.tiny import bert_tokenizer, build_tiny

        path = self.base / "bertok"
        model, _ = build_tiny("tiny-gpt2")
        model.save_pretrained(path)
        bert_tokenizer().save_pretrained(path)
        return path


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> Fixtures:
    base = tmp_path_factory.mktemp("bad-input-fixtures")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURONMAP_CACHE", str(base / "cache"))
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield Fixtures(base)


def _env(base: Path) -> dict[str, str]:
    """A new process's environment: offline, the fixtures' model cache, nothing inherited from this session."""
    return {"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "NEURONMAP_CACHE": str(base / "cache")}


@pytest.fixture(scope="module")
def zygote(fixtures: Fixtures) -> Iterator[Zygote]:
    helper = Zygote(fixtures.base / "zygote.log", _env(fixtures.base))
    yield helper
    helper.close()


@pytest.fixture(scope="module", autouse=True)
def started(fixtures: Fixtures, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple]]:
    """The FRESH cases, each in a new process, started with the module and run one at a time in the background:
    their seconds of imports take the core the other tests (one process at a time) leave idle."""
    script = Path(sys.executable).with_name("neuronmap")
    with ThreadPoolExecutor(1) as pool:
        runs = {}
        for case in (c for c in CASES if c.id in FRESH):
            d, args, before, manifests = _prepare(case, fixtures, tmp_path_factory.mktemp(case.id))
            command = [sys.executable, "-m", "neuronmap"] if case.id == FRESH[0] else [str(script)]
            run = pool.submit(subprocess.run, [*command, *args], stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, env=_env(fixtures.base), timeout=300)  # fmt: skip
            runs[case.id] = (case, d, before, manifests, run)
        yield runs


def _materialise(case: Case, fixtures: Fixtures, d: Path) -> list[str]:
    joined = " ".join(case.args)
    values = {"d": str(d), "base": str(fixtures.base)}
    for name in ("run", "mapped", "cls", "odd", "bertok", "data"):
        if "{" + name + "}" in joined:
            source = fixtures.get(name)
            if name in COPIED:
                shutil.copytree(source, d / name)
                values[name] = str(d / name)
            else:
                values[name] = str(source)
    for rel, content in case.files.items():
        path = d / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content is DIR:
            path.mkdir()
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(str(content))
    if case.prepare is not None:
        case.prepare(d)
    return [a.format(**values) for a in case.args]


def _manifests(d: Path) -> dict[str, dict]:
    return {str(p.relative_to(d)): json.loads(p.read_text()) for p in d.rglob("run.json") if _is_json(p)}


def _is_json(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except ValueError:
        return False
    return True


def _without_map_record(manifest: dict) -> dict:
    """A manifest less the map stage's record: a failing map may say so in run.json (and nothing else)."""
    stages = {k: v for k, v in manifest.get("stages", {}).items() if k != "map"}
    return {**manifest, "stages": stages}


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, fixtures: Fixtures, tmp_path: Path) -> None:
    d, args, before, manifests = _prepare(case, fixtures, tmp_path)
    _check(case, fixtures, d, before, manifests, run_cli(args))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_forked(case: Case, fixtures: Fixtures, zygote: Zygote, tmp_path: Path) -> None:
    """The same in a forked process: whatever reaches its file descriptors 1 and 2 counts, library output too."""
    d, args, before, manifests = _prepare(case, fixtures, tmp_path)
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    status = zygote.run(args, {}, out=str(out), err=str(err))
    result = Result(status["code"], out.read_text(), err.read_text())
    _check(case, fixtures, d, before, manifests, result)


def test_importing_neuronmap_prints_nothing(zygote: Zygote) -> None:
    """The forked cases' parent: what importing neuronmap and its libraries printed would precede every line."""
    assert zygote.log.read_text() == ""


def _prepare(case: Case, fixtures: Fixtures, tmp_path: Path) -> tuple[Path, list[str], dict, dict]:
    d = tmp_path / "case"
    d.mkdir()
    args = _materialise(case, fixtures, d)
    return d, args, snapshot(d), _manifests(d)


def _check(case: Case, fixtures: Fixtures, d: Path, before: dict, manifests: dict, result: Result) -> None:
    """Exit 2, one stderr line with the expected text, no traceback, nothing in ``d`` changed."""
    lines = result.err.strip("\n").split("\n")
    assert result.code == 2, f"exit {result.code}; stderr: {result.err}; stdout: {result.out[-500:]}"
    assert len(lines) == 1 and lines[0], f"expected one stderr line, got: {result.err!r}"
    assert "Traceback" not in result.err + result.out
    assert case.expect.format(d=d, base=fixtures.base) in lines[0], lines[0]
    after = snapshot(d)
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    for rel in [k for k in changed if k.endswith("run.json") and k in before and k in after]:
        old, new = manifests[rel], json.loads((d / rel).read_text())
        assert case.args[0] == "map" and _without_map_record(old) == _without_map_record(new), rel
        assert new["stages"]["map"]["status"] == "failed" or old["stages"].get("map") == new["stages"]["map"]
        changed.remove(rel)
    assert not changed, f"partial output: {changed}"


def test_the_table_covers_every_command() -> None:
    """Each command of the CLI has at least one case (the ones that take no user input aside)."""
    firsts = {c.args[0] if c.args[0] not in ("outliers", "study") else " ".join(c.args[:2]) for c in CASES}
    commands = {"trace", "map", "explore", "figures", "group", "causal-trace", "stats", "edit", "edit-eval",
                "models", "study editability", "outliers train", "outliers synthesize", "outliers refine", "outliers evaluate"}  # fmt: skip
    assert commands <= firsts, commands - firsts
    assert len(CASES) >= 110


@pytest.mark.parametrize("case_id", FRESH)
def test_bad_input_new_process(case_id: str, fixtures: Fixtures, started: dict[str, tuple]) -> None:
    case, d, before, manifests, run = started[case_id]
    proc = run.result()
    _check(case, fixtures, d, before, manifests, Result(proc.returncode, proc.stdout, proc.stderr))
