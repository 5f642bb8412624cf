"""Shared by the hardening tests: run the CLI in this process or in forked children, snapshot folders, compare
outputs.

``run_cli`` calls ``neuronmap.cli.main`` as the console script does (exit code, stdout, stderr), without the
three seconds a subprocess spends importing torch and transformers. ``Zygote`` runs it in a child forked from a
helper process (``fault_zygote.py``), whose file descriptors, unlike ``run_cli``'s string buffers, also catch
what libraries write straight to stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

# Wall-clock information a stage keeps: one field per stage record (trace ``timing``, map ``finished_at``), and
# one metadata entry of a statistics file. Everything else is compared byte for byte.
TIME_FIELDS = ("timing", "finished_at")
ZYGOTE = Path(__file__).with_name("fault_zygote.py")


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(args: list[str]) -> Result:
    from neuronmap.cli import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["neuronmap", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
    return Result(code, out.getvalue(), err.getvalue())


class Zygote:
    """A ``fault_zygote.py`` process: neuronmap imported once, then one forked child per command.

    The helper's own stderr goes to ``log`` (as does its children's output unless a request names other files),
    so an empty ``log`` after start-up means importing neuronmap and its libraries printed nothing."""

    def __init__(self, log: Path, env: dict[str, str]) -> None:
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(ZYGOTE)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                env=env,
            )
        first = self.proc.stdout.readline()
        assert first == '{"ready": true}\n', f"the helper printed {first!r} before it was ready; see {log}"

    def start(self, args: list[str], env: dict[str, str], **request: object) -> int:
        message = {"args": [str(a) for a in args], "env": env, "log": str(self.log), **request}
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())["pid"]

    def wait(self) -> dict:
        return json.loads(self.proc.stdout.readline())

    def run(self, args: list[str], env: dict[str, str], **request: object) -> dict:
        self.start(args, env, **request)
        return self.wait()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under ``folder`` with a hash of its bytes ('dir' for folders)."""
    found: dict[str, str] = {}
    if not folder.exists():
        return found
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        found[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def strip_times(obj: object) -> object:
    """A JSON value without its wall-clock fields (see TIME_FIELDS)."""
    if isinstance(obj, dict):
        return {k: strip_times(v) for k, v in obj.items() if k not in TIME_FIELDS}
    if isinstance(obj, list):
        return [strip_times(v) for v in obj]
    return obj


def comparable(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, object]:
    """The outputs of a stage, ready to compare with ``==``: Parquet and other files as bytes, JSON without its
    wall-clock fields, safetensors with its header's 'seconds' entry blanked. Lock and temporary files are
    reported as such, so a leftover one fails the comparison."""
    found: dict[str, object] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.is_dir() or any(rel.startswith(s) for s in skip):
            continue
        data = path.read_bytes()
        if path.suffix == ".json":
            found[rel] = strip_times(json.loads(data))
        elif path.suffix == ".safetensors":
            found[rel] = _safetensors_without_seconds(data)
        else:
            found[rel] = hashlib.sha256(data).hexdigest()
    return found


def _safetensors_without_seconds(data: bytes) -> object:
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = header.get("__metadata__", {})
    meta.pop("seconds", None)
    return header, hashlib.sha256(data[8 + n :]).hexdigest()


def parquet_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()
