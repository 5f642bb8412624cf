"""``RunDir``: a run directory's manifest (``run.json``), its lock, and the tables every stage reads.

``run.json`` records the run format, the model and, under ``stages``, one record per stage: its status, its
``params``, the ``outputs`` it wrote and when it finished (UTC). A lock file keeps two processes from writing the
same run. Records written before these names were fixed (``parameters`` for ``params``) are read as if new.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from neuronmap import __version__
from neuronmap.errors import NeuronmapError
from neuronmap.rundir.files import atomic_write_json, pid_alive, read_parquet, write_error
from neuronmap.rundir.names import (
    CONTEXTS,
    LEGACY_FORMATS,
    LOCK,
    MANIFEST,
    RUN_FORMAT,
    SCORES,
    UNRECORDED_OUTPUTS,
)


def run_format(manifest: dict[str, Any]) -> int | None:
    """The run format of a manifest; one written before manifests recorded it has its version's format."""
    return manifest.get("run_format", LEGACY_FORMATS.get(manifest.get("neuronmap_version", "")))


def _record(record: dict[str, Any]) -> dict[str, Any]:
    """A stage record with today's names: ``parameters`` (the edit and study stages' word before) is ``params``."""
    if "parameters" in record and "params" not in record:
        record = {("params" if k == "parameters" else k): v for k, v in record.items()}
    return record


class RunDir:
    """A run directory. Cheap to construct; nothing is read until asked."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- manifest -------------------------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.is_file():
            raise NeuronmapError(
                f"{self.path}: not a neuronmap run (no {MANIFEST}); run `neuronmap trace` first"
            )
        try:
            data = json.loads(self.manifest_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise NeuronmapError(f"{self.manifest_path}: corrupt manifest ({exc})") from exc
        if not isinstance(data, dict) or "stages" not in data:
            raise NeuronmapError(f"{self.manifest_path}: not a neuronmap manifest")
        return data

    def write_manifest(self, data: dict[str, Any]) -> None:
        """Write ``data`` as this version's manifest (a legacy one gains its format, which it already had)."""
        atomic_write_json(
            {**data, "neuronmap_version": __version__, "run_format": RUN_FORMAT}, self.manifest_path
        )

    def stage(self, name: str) -> dict[str, Any] | None:
        if not self.exists():
            return None
        record = self.manifest()["stages"].get(name)
        return None if record is None else _record(record)

    def set_stage(self, name: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the record of stage ``name`` and write the manifest."""
        return self.put_stage(name, {**(self.stage(name) or {}), **fields})

    def put_stage(self, name: str, record: dict[str, Any], **manifest: Any) -> dict[str, Any]:
        """Replace the record of stage ``name`` (and set the manifest's top-level ``manifest`` fields)."""
        data = self.manifest() if self.exists() else {"stages": {}}
        data["stages"][name] = record
        self.write_manifest({**data, **manifest})
        return record

    def check_format(self) -> dict[str, Any]:
        """The manifest, if its run format is the one this version reads (whichever version wrote it)."""
        data = self.manifest()
        made_in = run_format(data)
        if made_in != RUN_FORMAT:
            made_by = data.get("neuronmap_version") or "(unknown version)"
            shown = "(unknown)" if made_in is None else made_in
            raise NeuronmapError(
                f"{self.path}: made by neuronmap {made_by} in run format {shown}; neuronmap {__version__} reads "
                f"format {RUN_FORMAT}: trace it again (neuronmap trace --force)"
            )
        return data

    def require_stage(self, name: str) -> dict[str, Any]:
        record = self.check_format()["stages"].get(name)
        if not record or record.get("status") != "complete":
            raise NeuronmapError(
                f"{self.path}: stage '{name}' has not completed; run `neuronmap {name}` first"
            )
        return _record(record)

    def clear(self) -> None:
        """Remove what every stage wrote, then the manifest: the run starts again (a new trace).

        Each stage's record lists its outputs; a manifest from before records did lists none, so every file a
        stage then wrote goes. Files of a folder that is not a run (no manifest) are the user's and stay.
        """
        if not self.exists():
            return
        data = self.manifest()
        names = {out for record in data["stages"].values() for out in record.get("outputs") or ()}
        if "run_format" not in data:
            names.update(out for outs in UNRECORDED_OUTPUTS.values() for out in outs)
        for name in sorted(names):
            path = self.path / name
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        self.manifest_path.unlink()

    # -- tables ---------------------------------------------------------------------------------------------
    def table_path(self, name: str) -> Path:
        return self.path / name

    def contexts(self) -> pd.DataFrame:
        self.require_stage("trace")
        return read_parquet(self.path / CONTEXTS)

    def scores(self) -> pd.DataFrame:
        self.require_stage("trace")
        return read_parquet(self.path / SCORES)

    # -- locking --------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold an exclusive lock on the run; a lock left by a dead process is taken over."""
        # A folder made only to hold the lock is removed with it: a refused command leaves nothing behind.
        created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / LOCK
        for _ in range(2):
            try:
                fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                try:
                    holder = int(lock_path.read_text().split()[0])
                except (ValueError, IndexError, FileNotFoundError):
                    holder = -1
                if holder > 0 and holder != os.getpid() and pid_alive(holder):
                    raise NeuronmapError(
                        f"{self.path}: another neuronmap process (pid {holder}) is writing this run"
                    ) from None
                lock_path.unlink(missing_ok=True)
                continue
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(f"{os.getpid()} {time.time():.0f}\n")
            except OSError as exc:  # a full disk: no room even for the pid
                self._unlock(created)
                raise write_error(lock_path, exc) from exc
            break
        else:
            raise NeuronmapError(f"{self.path}: could not take the run lock {lock_path}")
        try:
            yield
        finally:
            self._unlock(created)

    def _unlock(self, created: bool) -> None:
        (self.path / LOCK).unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only if empty
