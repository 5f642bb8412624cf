"""Work kept piece by piece, for stages that resume after a crash or ``kill -9`` (``edit-eval``, ``study``).

A stage that does many independent pieces of work (a record, a fact) keeps each one as it is done in a folder of
the run: a Parquet table and a JSON sidecar. A rerun whose setting is the same reads the pieces found instead of
doing them again; any other rerun starts from an empty folder. The trace keeps its parts its own way (streamed,
merged at the end), since its parts are the unit of its output files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from neuronmap.rundir.files import atomic_write_json, atomic_write_parquet, json_text
from neuronmap.rundir.stage import Stage


def start_with_parts(st: Stage, parts: Path, setting: Mapping[str, Any]) -> bool:
    """Record ``st`` as running with ``setting`` (what, beyond its parameters, decides its pieces), keeping the
    pieces in ``parts`` when the previous record is a running one of the same parameters and setting (a run that
    was stopped), else emptying it. Whether it resumes."""
    before = st.previous or {}
    resumes = before.get("status") == "running" and not st.changes()
    resumes = resumes and before.get("setting") == json.loads(json_text(dict(setting)))
    if not resumes:
        shutil.rmtree(parts, ignore_errors=True)
    parts.mkdir(parents=True, exist_ok=True)
    st.start(setting=dict(setting))
    return resumes


def kept(part: Path | None, compute: Callable[[], tuple[pd.DataFrame, Any]]) -> tuple[pd.DataFrame, Any]:
    """A piece of work: its table and JSON-able extra, read from ``part`` when an earlier run wrote it, else
    computed and written there (the extra first, the table last: the table's presence marks the piece done).
    Either way they are read back from disk, so a resumed run and an uninterrupted one hold the same values.
    With ``part`` None, simply computed."""
    if part is None:
        return compute()
    if not part.is_file():
        table, extra = compute()
        atomic_write_json(extra, part.with_suffix(".json"))
        atomic_write_parquet(table, part)
    return pd.read_parquet(part), json.loads(part.with_suffix(".json").read_text())
