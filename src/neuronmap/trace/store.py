"""The run directory: the contract between stages (DESIGN.md).

Every table is written to a temporary name and renamed when complete, so an interrupted stage never leaves a file
that looks finished. ``run.json`` is the manifest; each stage records its parameters and status under ``stages``.
A lock file keeps two processes from writing the same run. No torch here: torch-free stages read runs too.
"""

from __future__ import annotations

import contextlib
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
SCORES = "scores.parquet"
LOCK = ".lock"


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_bytes(data: bytes, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(text: str, path: str | Path) -> None:
    atomic_write_bytes(text.encode("utf-8"), path)


def atomic_write_json(obj: Any, path: str | Path) -> None:
    atomic_write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n", path)


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays appear in summaries; JSON has no such types.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_parquet(df: pd.DataFrame | pa.Table, path: str | Path) -> None:
    """Write a table deterministically: no pandas index, no creation timestamps, fixed row-group size."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = df if isinstance(df, pa.Table) else pa.Table.from_pandas(df, preserve_index=False)
    # pandas metadata holds nothing we need and varies with the pandas version.
    table = table.replace_schema_metadata(None)
    tmp = _tmp_name(path)
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_parquet(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise NeuronmapError(f"{path}: no such table")
    try:
        return pq.read_table(path).to_pandas()
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

    def require_stage(self, name: str) -> dict[str, Any]:
        record = self.manifest()["stages"].get(name)
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
            with os.fdopen(fd, "w") as fh:
                fh.write(f"{os.getpid()} {time.time():.0f}\n")
            break
        else:
            raise NeuronmapError(f"{self.path}: could not take the run lock {lock_path}")
        try:
            yield
        finally:
            lock_path.unlink(missing_ok=True)
