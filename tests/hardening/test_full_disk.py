"""A real full disk: trace, map --force and edit --save write onto a small tmpfs that runs out of space part-way.

test_faults.py makes fsync fail with ENOSPC; here the kernel refuses the writes themselves, wherever they
happen (pyarrow's, a lock file's, a safetensors file's). Each command must end with exit code 2 and one stderr
line saying the disk is full, keep the previous complete outputs byte for byte, and finish once space is freed.
Mounting needs root with CAP_SYS_ADMIN (CI's container has it); elsewhere the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from bad_inputs import hparams
from hardening_helpers import Result, comparable, run_cli, snapshot
from test_faults import EDIT, MAP, TRACE, _contexts

PAGE = 4096  # tmpfs counts whole pages
NEURONMAP = Path(sys.executable).with_name("neuronmap")  # the console script, for one real process
MAP_AGAIN = (
    "--null-samples 0 --stability-seeds 0 --export graphml,gexf --force"  # other parameters than MAP's
)


@dataclass
class Tmpfs:
    path: Path

    def used_kib(self) -> int:
        st = os.statvfs(self.path)
        return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024

    def resize(self, kib: int) -> None:
        """Grow or shrink the file system (not below what it holds): space freed, or taken, by others."""
        subprocess.run(["mount", "-o", f"remount,size={kib}k", str(self.path)], check=True)


def _mount(path: Path, kib: int) -> str:
    """Mount a tmpfs of ``kib`` KiB at ``path``; the reason it failed, or ''."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return "mounting a tmpfs needs root (and the mount command)"
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={kib}k,mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    failed = done.stderr.strip().partition("\n")[0]
    return f"cannot mount a tmpfs here (no CAP_SYS_ADMIN?): {failed}" if done.returncode else ""


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(path)], check=True)  # a stray open file: detach it all the same


@pytest.fixture(scope="module")
def mountable(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip the module, with the reason, where no tmpfs can be mounted (checked before any reference is made)."""
    probe = tmp_path_factory.mktemp("probe")
    reason = _mount(probe, 4)
    if reason:
        pytest.skip(reason)
    _umount(probe)


@pytest.fixture
def tmpfs(mountable: None, tmp_path: Path) -> Iterator[Tmpfs]:
    """A 1 MiB tmpfs, to be resized by the test; unmounted afterwards whatever happened."""
    path = tmp_path / "disk"
    reason = _mount(path, 1024)
    if reason:
        pytest.skip(reason)
    try:
        yield Tmpfs(path)
    finally:
        _umount(path)


@pytest.fixture(scope="module")
def refs(mountable: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Inputs, an uninterrupted trace (``ref/run``) and a mapped copy of it (``map/run``), off any tmpfs."""
    base = tmp_path_factory.mktemp("full-disk")
    (base / "ctx.jsonl").write_text(_contexts())
    (base / "corpus.txt").write_text(
        "".join(f"Text {i} tells of the old city and its river.\n" for i in range(40))
    )
    (base / "hp.json").write_text(json.dumps(hparams(base / "corpus.txt")))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NEURONMAP_CACHE", str(base / "cache"))
        result = run_cli(_trace_args(base, base / "ref"))
        assert result.code == 0, result.err
        shutil.copytree(base / "ref" / "run", base / "map" / "run")
        result = run_cli(MAP.format(d=base / "map").split())
        assert result.code == 0, result.err
    return base


@pytest.fixture
def cache(refs: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The cache (models, statistics) stays off the small disk: only the command's own outputs go there."""
    monkeypatch.setenv("NEURONMAP_CACHE", str(refs / "cache"))
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def _trace_args(base: Path, d: Path) -> list[str]:
    return ["trace", "--contexts", str(base / "ctx.jsonl"), *TRACE.format(d=d).split()]


def _pages_kib(folder: Path) -> int:
    """What the files under ``folder`` take on a tmpfs, in KiB."""
    pages = sum(-(-p.stat().st_size // PAGE) for p in folder.rglob("*") if p.is_file())
    return pages * PAGE // 1024


def _one_line_disk_full(result: Result) -> None:
    assert result.code == 2, result.err + result.out[-2000:]
    assert result.err.count("\n") == 1 and "Traceback" not in result.err, result.err
    assert "No space left on device" in result.err and "the disk is full" in result.err


def _no_temporaries(folder: Path) -> None:
    assert not [str(p) for p in folder.rglob(".*")], "a lock or temporary file was left behind"


def test_trace_out_of_space_keeps_whole_parts_and_resumes(refs: Path, tmpfs: Tmpfs, cache: dict) -> None:
    """The trace needs more space than the disk has: the console script stops part-way with one line, every
    part on disk is whole, a disk with no byte free changes nothing, and with space again the trace resumes
    and ends equal to an uninterrupted one."""
    run = tmpfs.path / "run"
    # room for the finished run only: its parts, written first and removed last, take more
    tmpfs.resize(_pages_kib(refs / "ref" / "run"))
    done = subprocess.run(
        [NEURONMAP, *_trace_args(refs, tmpfs.path)], capture_output=True, text=True, env=cache, timeout=300
    )
    _one_line_disk_full(Result(done.returncode, done.stdout, done.stderr))
    assert sorted(p.name for p in (run / "parts").iterdir())  # some parts finished
    assert not (run / "scores.parquet").exists()
    _no_temporaries(run)
    kept = snapshot(run)

    tmpfs.resize(tmpfs.used_kib())  # not a byte free: even the run's lock cannot be written
    _one_line_disk_full(run_cli(_trace_args(refs, tmpfs.path)))
    assert snapshot(run) == kept

    tmpfs.resize(4 * _pages_kib(refs / "ref" / "run"))
    result = run_cli(_trace_args(refs, tmpfs.path))
    assert result.code == 0, result.err
    assert comparable(run) == comparable(refs / "ref" / "run")


def test_map_force_out_of_space_keeps_the_previous_map(refs: Path, tmpfs: Tmpfs, cache: dict) -> None:
    """A new map over a mapped run, with room for half of it: one line, and every file of the previous map
    (and the manifest) byte for byte as it was; with space again the new map is made."""
    run = Path(shutil.copytree(refs / "map" / "run", tmpfs.path / "run"))
    before = snapshot(run)
    tmpfs.resize(tmpfs.used_kib() + _pages_kib(run / "graph") // 2)
    args = ["map", run, *MAP_AGAIN.split()]
    _one_line_disk_full(run_cli(args))
    assert snapshot(run) == before
    tmpfs.resize(4 * tmpfs.used_kib())
    result = run_cli(args)
    assert result.code == 0, result.err
    assert snapshot(run / "graph") != snapshot(refs / "map" / "run" / "graph")  # other parameters


def test_edit_save_out_of_space_keeps_the_saved_delta(refs: Path, tmpfs: Tmpfs, cache: dict) -> None:
    """``edit --save`` again over a saved delta on a full disk: one line, and the saved delta byte for byte."""
    hp = ["--hparams", str(refs / "hp.json")]
    edit = [*hp, *(a.format(d=tmpfs.path) for a in EDIT)]
    result = run_cli(["edit", *edit])
    assert result.code == 0, result.err
    delta = tmpfs.path / "edit" / "delta.safetensors"
    saved = delta.read_bytes()
    tmpfs.resize(tmpfs.used_kib())
    other = [a if a != "Paris" else "Berlin" for a in edit]  # a different delta, so a torn write would show
    _one_line_disk_full(run_cli(["edit", *other]))
    assert delta.read_bytes() == saved
    _no_temporaries(tmpfs.path)
