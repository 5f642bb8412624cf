"""The run directory: the contract between stages (the README's "The run directory").

Every table is written to a temporary name and renamed when complete, so an interrupted stage never leaves a file
that looks finished. ``run.json`` is the manifest; each stage records its parameters and status under ``stages``.
A lock file keeps two processes from writing the same run. No torch here: torch-free stages read runs too.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from neuronmap import __version__
from neuronmap.errors import NeuronmapError

MANIFEST = "run.json"
CONTEXTS = "contexts.parquet"
DOCUMENTS = "documents.parquet"  # each-token traces: each document's text and tokens, once
SCORES = "scores.parquet"
LOCK = ".lock"


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def sweep_stale(path: Path) -> None:
    """Remove the temporaries of ``path`` that killed processes left (a live writer's are left alone)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        try:
            pid = int(stale.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            stale.unlink(missing_ok=True)


def write_error(path: Path, exc: OSError) -> NeuronmapError:
    """A failed write (a full disk, no permission) as a user error; the previous file is still in place."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    hint = "; the disk is full, free some space and run the command again" if full else ""
    return NeuronmapError(f"{path}: could not write ({exc.strerror or exc}){hint}")


def atomic_write_group(writers: list[tuple[Path, Callable[[Path], None]]]) -> None:
    """Write several files so that all of them replace their previous versions or none does.

    Each writer fills a temporary file; only when every one is written (and synced) are they renamed into place,
    in order, so the last one can mark the group complete. A failed write removes the temporaries and raises a
    ``NeuronmapError`` for OS errors (a full disk), leaving the previous files untouched.
    """
    tmps: list[Path] = []
    path = Path()
    try:
        for path, write in writers:
            path.parent.mkdir(parents=True, exist_ok=True)
            sweep_stale(path)
            tmps.append(_tmp_name(path))
            write(tmps[-1])
            with open(tmps[-1], "rb") as fh:
                os.fsync(fh.fileno())
        for (path, _), tmp in zip(writers, tmps, strict=True):
            os.replace(tmp, path)
    except BaseException as exc:
        for tmp in tmps:
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    atomic_write_group([(Path(path), lambda tmp: tmp.write_bytes(data))])


def atomic_write_text(text: str, path: str | Path) -> None:
    atomic_write_bytes(text.encode("utf-8"), path)


def atomic_write_json(obj: Any, path: str | Path) -> None:
    atomic_write_text(json_text(obj), path)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays appear in summaries; JSON has no such types.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_parquet(df: pd.DataFrame | pa.Table, path: str | Path) -> None:
    """Write a table deterministically: no pandas index, no creation timestamps, fixed row-group size."""
    atomic_write_group([(Path(path), parquet_writer(df))])


def parquet_writer(df: pd.DataFrame | pa.Table) -> Callable[[Path], None]:
    """A writer for ``atomic_write_group``: the table as ``atomic_write_parquet`` writes it."""
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    # pandas metadata holds nothing we need and varies with the pandas version.
    table = table.replace_schema_metadata(None)
    return lambda tmp: pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20)


def json_text(obj: Any) -> str:
    """JSON as every neuronmap file holds it: sorted keys, indented, numpy values as lists and numbers."""
    return json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n"


def concat_parquet(
    sources: list[Path], path: str | Path, keep: Callable[[pa.Table], pa.Table] | None = None
) -> None:
    """Stream Parquet files into one table at ``path``, one at a time (memory bounded by the largest source).

    Schemas are unified first (a column that is all null in one source and text in another becomes text), and
    ``keep`` may filter each source's rows. The result is renamed into place only when complete.
    """
    path = Path(path)
    schema = pa.unify_schemas([pq.read_schema(s) for s in sources], promote_options="permissive")
    schema = schema.remove_metadata()
    if keep is not None:
        schema = keep(schema.empty_table()).schema
    sweep_stale(path)
    tmp = _tmp_name(path)
    try:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for source in sources:
                table = pq.read_table(source).replace_schema_metadata(None)
                if keep is not None:
                    table = keep(table)
                writer.write_table(table.select(schema.names).cast(schema), row_group_size=1 << 20)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise write_error(path, exc) from exc
        raise


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise NeuronmapError(f"{path}: no such table")
    try:
        return pq.read_table(path, columns=columns).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise NeuronmapError(f"{path}: not a readable Parquet table ({exc})") from exc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
        data = dict(data)
        data["neuronmap_version"] = __version__
        atomic_write_json(data, self.manifest_path)

    def stage(self, name: str) -> dict[str, Any] | None:
        if not self.exists():
            return None
        return self.manifest()["stages"].get(name)

    def set_stage(self, name: str, **fields: Any) -> dict[str, Any]:
        """Merge ``fields`` into the record of stage ``name`` and write the manifest."""
        data = self.manifest() if self.exists() else {"stages": {}}
        record = dict(data["stages"].get(name, {}))
        record.update(fields)
        data["stages"][name] = record
        self.write_manifest(data)
        return record

    def check_version(self) -> dict[str, Any]:
        """The manifest, if this version of neuronmap wrote it; tables of another version may differ in shape."""
        data = self.manifest()
        made_by = data.get("neuronmap_version")
        if made_by != __version__:
            raise NeuronmapError(
                f"{self.path}: made by neuronmap {made_by or '(unknown version)'}, this is {__version__}; "
                "trace it again (neuronmap trace --force)"
            )
        return data

    def require_stage(self, name: str) -> dict[str, Any]:
        record = self.check_version()["stages"].get(name)
        if not record or record.get("status") != "complete":
            raise NeuronmapError(
                f"{self.path}: stage '{name}' has not completed; run `neuronmap {name}` first"
            )
        return record

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
                if holder > 0 and holder != os.getpid() and _pid_alive(holder):
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
