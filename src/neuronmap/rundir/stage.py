"""``stage(...)``: one stage's turn at a run directory, with the bookkeeping every stage shares.

It holds the run's lock, compares the stage's parameters with those of its previous record (for reuse, or for a
refusal that names each change), and writes the record: ``running`` when work starts (for a stage that resumes
or may fail half-way), then ``complete`` with the ``params``, the ``outputs`` the stage wrote (relative to the
run) and ``finished_at`` in UTC. A stage that fails after it started is recorded ``failed``, unless it resumes
(its ``running`` record is what a rerun resumes), or a complete record came before and the error is a user
error: such an error is raised before outputs are replaced, so the previous outputs, and their record, stand.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from neuronmap.errors import NeuronmapError
from neuronmap.rundir.files import json_text
from neuronmap.rundir.run import RunDir


class Stage:
    """What a stage's code sees inside ``with stage(...)``: the previous record and the writers of the new one."""

    def __init__(self, run: RunDir, name: str, params: Mapping[str, Any] | None, resumable: bool) -> None:
        self.run, self.name, self.resumable = run, name, resumable
        self.params = params
        self.previous = run.stage(name)
        self.outputs: set[str] = set()
        self.started = self.finished = False

    @property
    def params(self) -> dict[str, Any]:
        return self._params

    @params.setter
    def params(self, value: Mapping[str, Any] | None) -> None:
        # As run.json will hold them (tuples as lists, numpy values as numbers), so comparisons see what is stored.
        self._params = json.loads(json_text(dict(value or {})))

    @property
    def complete(self) -> bool:
        """Whether the previous record is a complete one."""
        return (self.previous or {}).get("status") == "complete"

    def changes(self, defaults: Mapping[str, Any] | None = None) -> list[str]:
        """``key: old -> new`` for each parameter that differs from the previous record's. A parameter the record
        lacks counts as its value in ``defaults`` (a parameter added later, whose default is what runs did)."""
        given = (self.previous or {}).get("params") or {}
        old = {**{k: v for k, v in (defaults or {}).items() if k in self.params}, **given}
        new = self.params
        return [
            f"{k}: {old.get(k)!r} -> {new.get(k)!r}"
            for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k)
        ]

    def wrote(self, *paths: str | Path) -> None:
        """Record outputs: files or folders, as names inside the run or as paths under it. A new trace removes
        them."""
        for path in paths:
            name = Path(path)
            if name.is_relative_to(self.run.path):
                name = name.relative_to(self.run.path)
            if name.is_absolute() or ".." in name.parts or not name.parts:
                raise ValueError(f"{path}: not inside the run {self.run.path}")
            self.outputs.add(name.as_posix())

    def start(self, manifest: Mapping[str, Any] | None = None, **fields: Any) -> None:
        """Record the stage as ``running`` (replacing its previous record) with ``fields``; ``manifest`` sets
        top-level fields of run.json."""
        self.started = True
        record = {"status": "running", "params": self.params, "outputs": sorted(self.outputs), **fields}
        self.run.put_stage(self.name, record, **(manifest or {}))

    def finish(self, **fields: Any) -> dict[str, Any]:
        """Record the stage as ``complete``, with the fields of its ``running`` record (if any) and ``fields``."""
        base = self.run.stage(self.name) if self.started else {}
        record = {**(base or {}), **fields, "status": "complete", "params": self.params,
                  "outputs": sorted(self.outputs), "finished_at": utc_now()}  # fmt: skip
        record.pop("error", None)
        self.finished = True
        return self.run.put_stage(self.name, record)

    def _failed(self, exc: BaseException) -> None:
        if not self.started or self.finished or self.resumable or not self.run.exists():
            return
        if self.complete and isinstance(exc, NeuronmapError):
            self.run.put_stage(self.name, self.previous or {})
        else:
            self.run.set_stage(self.name, status="failed", error=str(exc) or type(exc).__name__)


def utc_now() -> str:
    """The wall-clock time stages record: UTC, to the second, with its zone."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@contextlib.contextmanager
def stage(
    run: RunDir, name: str, params: Mapping[str, Any] | None = None, *, resumable: bool = False
) -> Iterator[Stage]:
    """Hold ``run``'s lock for stage ``name`` with ``params``; see the module docstring for what is recorded.

    ``resumable``: the stage picks up its own unfinished work, so a failure leaves its ``running`` record.
    """
    with run.lock():
        current = Stage(run, name, params, resumable)
        try:
            yield current
        except BaseException as exc:
            current._failed(exc)
            raise


def record_views(
    run: RunDir, name: str, paths: Iterable[Path], params: Mapping[str, Any] | None = None
) -> None:
    """Record the files that a reader of the run wrote into it (the explore stage's page and figures) as stage
    ``name``'s outputs, so that a new trace removes them; files written outside the run are not the run's."""
    inside = [p for p in paths if p.is_relative_to(run.path)]
    if inside:
        with stage(run, name, params) as st:
            st.wrote(*inside)
            st.finish()
