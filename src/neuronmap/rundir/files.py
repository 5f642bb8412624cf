"""Files of a run directory, written so that a reader never sees one half-written.

Every file is written to a temporary name and renamed when complete; a temporary that a killed process left is
swept by the next writer. Parquet tables are written without timestamps, so the same data give the same bytes.
No torch here: torch-free stages read and write runs too.
"""

from __future__ import annotations

import errno
import glob
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from neuronmap.errors import NeuronmapError


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def sweep_stale(path: Path) -> None:
    """Remove the temporaries of ``path`` that killed processes left (a live writer's are left alone)."""
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        try:
            pid = int(stale.name.rsplit("-", 1)[1])
        except ValueError:
            continue
        if pid != os.getpid() and not pid_alive(pid):
            stale.unlink(missing_ok=True)


def write_error(path: Path, exc: OSError) -> NeuronmapError:
    """A failed write (a full disk, no permission) as a user error; the previous file is still in place."""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    hint = "; the disk is full, free some space and run the command again" if full else ""
    return NeuronmapError(f"{path}: could not write ({exc.strerror or exc}){hint}")


def atomic_write_group(writers: list[tuple[Path, Callable[[Path], object]]]) -> None:
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


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (one of another user counts): its lock and temporaries are still in use."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
