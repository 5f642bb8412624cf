"""Every case of ``bad_inputs.CASES``: exit code 2, one line on stderr, no traceback, no partial output.

The CLI runs in this process (``neuronmap.cli.main``); the fixtures (a traced run, a mapped run, a classifier,
odd model folders) are built once, on first use, and each case works on its own copies.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
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
from hardening_helpers import run_cli, snapshot

COPIED = ("run", "mapped", "cls")  # fixtures a case changes: each case gets its own copy


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
    d = tmp_path / "case"
    d.mkdir()
    args = _materialise(case, fixtures, d)
    before, manifests = snapshot(d), _manifests(d)

    result = run_cli(args)

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


def test_a_real_process_prints_one_line(tmp_path: Path) -> None:
    """The console script itself (not in-process): one stderr line, exit 2, nothing written."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a b", "target": "c"}\n{"text": \n')
    out = tmp_path / "out"
    env = {"HF_HUB_OFFLINE": "1", "NEURONMAP_CACHE": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "neuronmap", "trace", "--model", "tiny-gpt2", "--contexts", str(bad), "--out",
         str(out), "--threads", "1"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert f"{bad}: line 2: malformed JSON" in proc.stderr and not out.exists()
