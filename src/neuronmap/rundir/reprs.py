"""A run's summary as HTML, for notebooks: what ``_repr_html_`` of a run, and of each stage's result, shows.

It reads only ``run.json``, ``graph/summary.json`` and the first rows of ``contexts.parquet`` (or of
``documents.parquet``), so it is cheap on a run of any size. Everything shown is escaped: texts, tokens, group
values and paths come from users and models.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from neuronmap.rundir.names import CONTEXTS, DOCUMENTS, GRAPH, MANIFEST

FIRST_CONTEXTS = 3  # contexts shown
LARGEST_CLUSTERS = 5  # clusters shown, with their top tokens
TOP_TOKENS = 6
TEXT_CHARS = 100  # the end of a context's text (the part next to its target)
_STYLE = "border-collapse:collapse;text-align:left;margin:0.2em 0"
_CELL = "text-align:left;padding:0.1em 0.6em 0.1em 0;vertical-align:top"


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _num(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _table(rows: list[tuple[str, str]]) -> str:
    """Rows of (header, cell HTML): the cells are already escaped."""
    body = "".join(
        f'<tr><th style="{_CELL}">{escape(h)}</th><td style="{_CELL}">{c}</td></tr>' for h, c in rows
    )
    return f'<table style="{_STYLE}">{body}</table>'


def _grid(header: list[str], rows: list[list[str]]) -> str:
    """A table with a header row; the cells are already escaped."""
    head = "".join(f'<th style="{_CELL}">{escape(h)}</th>' for h in header)
    body = "".join("<tr>" + "".join(f'<td style="{_CELL}">{c}</td>' for c in row) + "</tr>" for row in rows)
    return f'<table style="{_STYLE}"><tr>{head}</tr>{body}</table>'


def clusterability_text(summary: dict[str, Any]) -> str:
    """The map's clusterability test in a few words (plain text)."""
    test = summary.get("clusterability") or {}
    if not test:
        return "not tested (--null-samples 0)"
    where = f"{test.get('null')} null, {test.get('samples')} samples"
    if test.get("p") is not None:
        z = "" if test.get("z") is None else f", z = {test['z']:.1f}"
        return f"p = {test['p']:.3g}{z} ({where})"
    ps = sorted(layer["p"] for layer in test.get("layers") or () if layer.get("p") is not None)
    if not ps:
        return f"not tested ({where})"
    return f"{len(ps)} layers tested: p from {ps[0]:.3g} to {ps[-1]:.3g} ({where})"


def _first_contexts(path: Path) -> list[tuple[str, str | None]]:
    """(text, target) of the first contexts (each-token runs: the first documents' texts, no target)."""
    try:
        contexts = pq.ParquetFile(path / CONTEXTS)
        names = contexts.schema_arrow.names
        if "text" in names and "target" in names:
            table = next(contexts.iter_batches(FIRST_CONTEXTS, columns=["text", "target"]), None)
            return (
                []
                if table is None
                else list(zip(table["text"].to_pylist(), table["target"].to_pylist(), strict=True))
            )
        documents = pq.ParquetFile(path / DOCUMENTS)
        table = next(documents.iter_batches(FIRST_CONTEXTS, columns=["text"]), None)
        return [] if table is None else [(text, None) for text in table["text"].to_pylist()]
    except (OSError, KeyError, ValueError):
        return []


def _short(text: Any) -> str:
    text = str(text)
    return escape(text if len(text) <= TEXT_CHARS else "…" + text[-TEXT_CHARS:])


def run_html(path: str | Path, title: str = "neuronmap run") -> str:
    """A compact HTML summary of the run at ``path``: model, stages, counts, clusterability, groups, the
    largest clusters and the first contexts. A folder that is not (yet) a run says so."""
    path = Path(path)
    manifest = _json(path / MANIFEST)
    head = f"<b>{escape(title)}</b> <code>{escape(str(path))}</code>"
    if not manifest:
        return f'<div class="neuronmap-run">{head}: no {MANIFEST} (not a run yet)</div>'
    model = manifest.get("model") or {}
    stages = manifest.get("stages") or {}
    rows = [
        (
            "model",
            escape(
                f"{model.get('spec', '?')} ({model.get('arch', '?')}, {model.get('n_layers', '?')} layers × "
                f"{model.get('d_mlp', '?')} neurons)"
            ),
        ),
        (
            "stages",
            escape(", ".join(f"{name}: {(s or {}).get('status', '?')}" for name, s in stages.items())),
        ),
    ]
    trace = stages.get("trace") or {}
    params, done = trace.get("params") or {}, trace.get("summary") or {}
    if done:
        kept = f"{done.get('contexts_kept')} of {done.get('contexts_total')} contexts kept"
        if "documents" in done:
            kept = f"{done.get('contexts_kept')} events from {done['documents']} documents"
        rows.append(("trace", escape(f"{params.get('method')} on {params.get('contexts')}: {kept}")))
        rows.append(
            ("scores", escape(f"{done.get('score_rows')} rows, {done.get('neurons_with_scores')} neurons"))
        )
    summary = (
        _json(path / GRAPH / "summary.json") if (stages.get("map") or {}).get("status") == "complete" else {}
    )
    clusters = ""
    if summary:
        counts = summary.get("counts") or {}
        rows.append(
            (
                "map",
                escape(
                    f"{counts.get('clusters')} clusters ({counts.get('merged_clusters')} merged) of "
                    f"{counts.get('neurons')} neurons; {summary.get('method')}, {summary.get('scope')}"
                ),
            )
        )
        rows.append(("clusterability", escape(clusterability_text(summary))))
        groups = [
            f"{name} ({g.get('values')} values): AMI {_num(g.get('ami'), 2)}, p {_num(g.get('p'))}"
            for name, g in (summary.get("groups") or {}).items()
            if isinstance(g, dict)
        ]
        if groups:
            rows.append(("groups", escape("; ".join(groups))))
        largest = [
            [escape(str(c.get("cluster"))), escape(str(c.get("size"))),
             escape(" · ".join(map(repr, (c.get("top_tokens") or [])[:TOP_TOKENS])))]
            for c in (summary.get("largest_clusters") or [])[:LARGEST_CLUSTERS]
        ]  # fmt: skip
        if largest:
            clusters = "<div>largest clusters</div>" + _grid(["cluster", "neurons", "top tokens"], largest)
    contexts = ""
    first = _first_contexts(path) if trace.get("status") == "complete" else []
    if first:
        contexts = "<div>first contexts</div>" + _grid(
            ["text", "target"],
            [[_short(text), "" if target is None else escape(repr(target))] for text, target in first],
        )
    return f'<div class="neuronmap-run">{head}{_table(rows)}{clusters}{contexts}</div>'


class InlineHTML:
    """A whole HTML document shown inline in a notebook: an ``<iframe srcdoc>``, sandboxed (its scripts run in an
    origin of their own, so they cannot reach the notebook's)."""

    def __init__(self, document: str, height: int = 720, title: str = "neuronmap") -> None:
        self.document, self.height, self.title = document, int(height), title

    def _repr_html_(self) -> str:
        return (
            f'<iframe srcdoc="{escape(self.document, quote=True)}" title="{escape(self.title, quote=True)}" '
            f'sandbox="allow-scripts allow-downloads" style="width:100%;height:{self.height}px;border:0"></iframe>'
        )

    def __repr__(self) -> str:
        return f"InlineHTML({self.title!r}, {len(self.document):,} characters)"
