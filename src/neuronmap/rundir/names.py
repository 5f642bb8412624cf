"""The names of a run directory's files, and the run format they make up: one place for every stage to read."""

from __future__ import annotations

# The layout of the tables below. It changes only when a table or a record changes shape; a run of the same format
# is read by any neuronmap version.
RUN_FORMAT = 1
# Runs written before run.json recorded its format, by the version that wrote them.
LEGACY_FORMATS = {"0.1.0": 1}

MANIFEST = "run.json"
LOCK = ".lock"
CONTEXTS = "contexts.parquet"  # trace: one row per kept context (or event)
DROPPED = "contexts_dropped.parquet"  # trace: the contexts --keep known left out
DOCUMENTS = "documents.parquet"  # each-token traces: each document's text and tokens, once
SCORES = "scores.parquet"  # trace: sparse neuron scores
PARTS = "parts"  # trace: finished parts of an unfinished trace
GRAPH = "graph"  # map: the folder of its tables and summary
SENSES = "senses.parquet"  # group: the senses of every target word
PAGE = "explorer.html"  # explore: the page
FIGURES = "figures"  # explore: static figures

# What each stage wrote in runs whose records did not list their outputs yet (format 1 before it did).
UNRECORDED_OUTPUTS = {
    "trace": (CONTEXTS, DROPPED, DOCUMENTS, SCORES, PARTS),
    "map": (GRAPH,),
    "group": (SENSES,),
    "explore": (PAGE, FIGURES),
}
