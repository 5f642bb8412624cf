"""The run directory: the ground floor every stage stands on (the README's "The run directory").

Stages talk through a run directory: Parquet tables, written atomically (``files``), named in one place
(``names``), listed in the manifest ``run.json`` (``run``), and one ``stage(...)`` for each stage's bookkeeping
(``stage``). Nothing here imports a stage, torch or a model.
"""

from __future__ import annotations

from neuronmap.rundir.files import (
    atomic_write_bytes,
    atomic_write_group,
    atomic_write_json,
    atomic_write_parquet,
    atomic_write_text,
    concat_parquet,
    json_text,
    parquet_writer,
    read_parquet,
    sweep_stale,
    write_error,
)
from neuronmap.rundir.names import (
    CONTEXTS,
    DOCUMENTS,
    DROPPED,
    FIGURES,
    GRAPH,
    MANIFEST,
    PAGE,
    PARTS,
    RUN_FORMAT,
    SCORES,
    SENSES,
)
from neuronmap.rundir.parts import kept, start_with_parts
from neuronmap.rundir.run import RunDir, run_format
from neuronmap.rundir.stage import Stage, record_views, stage, utc_now

__all__ = [
    "CONTEXTS",
    "DOCUMENTS",
    "DROPPED",
    "FIGURES",
    "GRAPH",
    "MANIFEST",
    "PAGE",
    "PARTS",
    "RUN_FORMAT",
    "SCORES",
    "SENSES",
    "RunDir",
    "Stage",
    "atomic_write_bytes",
    "atomic_write_group",
    "atomic_write_json",
    "atomic_write_parquet",
    "atomic_write_text",
    "concat_parquet",
    "json_text",
    "kept",
    "parquet_writer",
    "read_parquet",
    "record_views",
    "run_format",
    "stage",
    "start_with_parts",
    "sweep_stale",
    "utc_now",
    "write_error",
]
