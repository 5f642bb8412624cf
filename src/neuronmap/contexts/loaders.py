"""Load contexts from a file or a built-in set; every user mistake becomes a one-line ``NeuronmapError``.

The file type comes from the extension:

- ``.jsonl``: one JSON object a line with ``text``, ``target`` (a string, or ``null`` for the model's own
  top prediction) and optional ``subject``; every other field is kept as a group.
- ``.csv`` / ``.tsv``: a header row naming the columns, with the same meaning as the JSONL fields; group
  cells stay strings and an empty ``subject`` cell means no subject. TSV has no quoting.
- ``.txt``: one context a line, ``text<TAB>target`` or ``text`` alone (the model's top prediction is the
  target).
- ``.json``: a list of CounterFact records, known_1000 records, or plain ``text``/``target`` objects,
  recognised from the first record's keys.

Contexts may also come as rows, for notebooks: a list of dicts or a pandas DataFrame with the fields of a JSONL
record (a DataFrame's missing cells are null), checked by the same rules.

Nothing is stripped from a text or a target: the tracer owns leading-space handling. Errors name the file
and the 1-based line of the offending record (rows: ``contexts: row 3``, the list position or the DataFrame's
index label), so the user can fix the file without a traceback.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuronmap.contexts.builtin import KEEP_KNOWN, PREFIX, load_builtin, load_builtin_documents
from neuronmap.contexts.record import Context
from neuronmap.errors import NeuronmapError
from neuronmap.textfile import file_error, lines, parse_json, read_utf8

# Columns the run directory puts next to the group columns in contexts.parquet: a group must not shadow them.
RESERVED = frozenset(
    {"context_id", "target_ids", "p_target", "known", "kept", "input_ids", "tokens", "target_tokens", "position",
     "p_corrupted", "doc_id", "char_start", "char_end", "token_ids"}
)  # fmt: skip
_FIELDS = frozenset({"text", "target", "subject"})
_JSON_WS = re.compile(r"[ \t\n\r]*")

Rows = list[tuple[int, Context]]
Fields = tuple[str, ...]
CONTEXT: Fields = ("text", "target")  # the fields a context record must have
DOCUMENT: Fields = ("text",)  # a document for each-token traces: its text and group fields only


@dataclass
class ContextSet:
    """Loaded contexts plus what the tracer needs to know about their origin.

    ``default_keep`` is the ``--keep`` filter used when the user gives none: ``"known"`` (only contexts the
    model predicts) for built-in fact sets, whose point is facts the model knows; ``"all"`` for user files
    and ``builtin:wiki``, whose targets the user (or the text) chose.
    """

    contexts: list[Context]
    source: str
    builtin: bool
    default_keep: str
    lines: list[int] | None = None  # the file line each context starts on (None for built-in sets)
    rows: list[str] | None = None  # contexts given as rows: where each came from ("contexts: row 3")

    def where(self, index: int) -> str:
        """Where context ``index`` came from, for a message that lets the user find it."""
        if self.rows is not None:
            return self.rows[index]
        if self.lines is None:
            return f"{self.source}: context {index + 1}"
        return f"{self.source}: line {self.lines[index]}"

    def __len__(self) -> int:
        return len(self.contexts)

    def __iter__(self) -> Iterator[Context]:
        return iter(self.contexts)


def load_contexts(src: str | Path | Any, *, limit: int | None = None, seed: int = 0) -> ContextSet:
    """Load ``builtin:NAME``, a context file or rows (a list of dicts, a DataFrame), keeping the first ``limit``.

    The whole file is validated even when ``limit`` keeps only a few, so a bad line is never silently skipped.
    ``seed`` only matters for sampled built-in sets (``builtin:wiki``). Rows get the source
    ``<N contexts in memory, sha256 HASH>``, which names the data they hold (for run.json's reuse checks).
    """
    _check_limit(limit, "contexts")
    if not isinstance(src, str | os.PathLike):
        return _load_rows(src, CONTEXT, "contexts", limit)
    if isinstance(src, str) and src.startswith(PREFIX):
        spec = src.removeprefix(PREFIX)
        contexts = load_builtin(spec, limit=limit, seed=seed)
        keep = "known" if spec.partition(":")[0] in KEEP_KNOWN else "all"
        return ContextSet(contexts[:limit], src, builtin=True, default_keep=keep)
    return _load_file(src, _READERS, "contexts", f"{PREFIX}facts, {PREFIX}wiki[:N]", limit)


def load_documents(src: str | Path | Any, *, limit: int | None = None, seed: int = 0) -> ContextSet:
    """Documents for each-token traces: ``builtin:wiki[:N]`` (whole lead paragraphs), a ``.txt`` file (one
    document a line) or ``.jsonl``/``.csv``/``.tsv`` rows with ``text`` and group fields (no target: every token
    is one). Returned as contexts without targets; the whole file is checked even when ``limit`` keeps a few."""
    _check_limit(limit, "documents")
    if not isinstance(src, str | os.PathLike):
        return _load_rows(src, DOCUMENT, "documents", limit)
    if isinstance(src, str) and src.startswith(PREFIX):
        documents = load_builtin_documents(src.removeprefix(PREFIX), limit=limit, seed=seed)
        return ContextSet(documents[:limit], src, builtin=True, default_keep="all")
    return _load_file(src, _DOCUMENT_READERS, "documents", f"{PREFIX}wiki[:N]", limit)


def _check_limit(limit: int | None, what: str) -> None:
    if limit is not None and limit <= 0:
        raise NeuronmapError(f"limit must be a positive number of {what}, got {limit}")


def _load_file(
    src: str | os.PathLike[str],
    readers: dict[str, Callable[[str, Path], Rows]],
    what: str,
    builtins: str,
    limit: int | None,
) -> ContextSet:
    path = Path(src).expanduser()
    reader = readers.get(path.suffix.lower())
    if reader is None:
        kind = "" if what == "contexts" else f" for {what}"
        raise NeuronmapError(
            f"{path}: unsupported file type '{path.suffix}'{kind} (supported: {', '.join(readers)}, or {builtins})"
        )
    rows = reader(read_utf8(path, f"a {what[:-1]} file"), path)
    if not rows:
        raise NeuronmapError(f"no {what} in {path}")
    _check_group_types(rows, path)
    kept = rows[:limit]
    return ContextSet(
        [context for _, context in kept],
        str(src),
        builtin=False,
        default_keep="all",
        lines=[n for n, _ in kept],
    )


def _load_rows(data: Any, required: Fields, what: str, limit: int | None) -> ContextSet:
    """Contexts (or documents) given as rows: a list (any iterable) of dicts, or a pandas DataFrame.

    Each row is checked as a JSONL record is; an error names the row (its list position, or its DataFrame index
    label) where a file's names the line.
    """
    labels, records = _rows(data, what)
    # The readers' errors read "contexts: line N: ..." for record N; they are rewritten to name the row.
    where = Path(what)
    rows: Rows = []
    try:
        for position, record in enumerate(records):
            if not isinstance(record, Mapping):
                raise file_error(where, position, f"expected a dict of fields, got {_kind(record)}")
            for key in record:
                if not isinstance(key, str):
                    raise file_error(where, position, f"field names must be strings, got {key!r}")
            rows.append((position, _plain_context(dict(record), where, position, required)))
        _check_group_types(rows, where)
    except NeuronmapError as exc:
        found = re.match(rf"{what}: line (\d+): ", str(exc))
        if found is None:
            raise
        row = labels[int(found[1])]
        raise NeuronmapError(f"{what}: row {row}: {str(exc)[found.end() :]}") from None
    if not rows:
        raise NeuronmapError(f"no {what}: the rows given are empty")
    contexts = [context for _, context in rows]
    records_json = json.dumps(
        [[c.text, c.target, c.subject, c.groups] for c in contexts], ensure_ascii=False, default=repr
    )
    digest = hashlib.sha256(records_json.encode("utf-8")).hexdigest()[:16]
    return ContextSet(
        contexts[:limit],
        f"<{len(contexts)} {what if len(contexts) > 1 else what[:-1]} in memory, sha256 {digest}>",
        builtin=False,
        default_keep="all",
        rows=[f"{what}: row {label}" for label in labels[: len(contexts[:limit])]],
    )


def _rows(data: Any, what: str) -> tuple[list[Any], list[Any]]:
    """(label, record) lists of rows given in memory; anything that holds no rows is a one-line error."""
    if type(data).__name__ == "DataFrame" and hasattr(data, "to_dict"):
        import pandas as pd

        if isinstance(data, pd.DataFrame):
            if not data.columns.is_unique:
                twice = data.columns[data.columns.duplicated()][0]
                raise NeuronmapError(f"{what}: column {twice!r} appears twice in the DataFrame")
            # Missing cells (NaN, None, pd.NA) are null, as an absent JSON field's value is.
            records = [{key: _cell(value, missing=True) for key, value in row.items()} for row in
                       data.to_dict("records")]  # fmt: skip
            return list(data.index), records
    if isinstance(data, Mapping | str | bytes) or not hasattr(data, "__iter__"):
        hint = ": pass a list of dicts, one per context" if isinstance(data, Mapping) else ""
        raise NeuronmapError(
            f"{what} must be a file path, '{PREFIX}NAME', a list of dicts or a pandas DataFrame "
            f"(got {type(data).__name__}{hint})"
        )
    records = [
        {key: _cell(value) for key, value in record.items()} if isinstance(record, Mapping) else record
        for record in data
    ]
    return list(range(len(records))), records


def _cell(value: Any, missing: bool = False) -> Any:
    """A row's value as a JSON record holds it: numpy scalars as Python ones; with ``missing``, NaN and pandas'
    missing values as None."""
    if hasattr(value, "item") and type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()
    if missing and (value is None or (isinstance(value, float) and value != value) or
                    type(value).__name__ in ("NAType", "NaTType")):  # fmt: skip
        return None
    return value


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "a list" if isinstance(value, list) else "an object"


def _encodable(text: str) -> bool:
    # JSON escapes can spell a lone surrogate, which no tokenizer, terminal or Parquet file accepts.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _string(value: Any, label: str, path: Path, line: int) -> str:
    # Labels are quoted with repr: field names come from the user's file, and a message stays one line.
    if not isinstance(value, str):
        raise file_error(path, line, f"field {label!r} must be a string, got {_kind(value)}")
    if not _encodable(value):
        raise file_error(path, line, f"field {label!r} holds an invalid character (a lone surrogate)")
    return value


def _get(obj: dict[str, Any], key: str, kind: type, label: str, path: Path, line: int) -> Any:
    if key not in obj:
        raise file_error(path, line, f"missing field {label!r}")
    value = obj[key]
    if not isinstance(value, kind):
        raise file_error(path, line, f"field {label!r} must be {_kind(kind())}, got {_kind(value)}")
    return value


def _make_context(
    text: Any, target: Any, subject: Any, groups: dict[str, Any], path: Path, line: int
) -> Context:
    """Validate one record's values; the single place every format's rules are enforced."""
    text = _string(text, "text", path, line)
    if not text.strip():
        raise file_error(path, line, "empty text")
    if target is not None:
        target = _string(target, "target", path, line)
        if not target.strip():
            raise file_error(path, line, "empty target")
    if subject is not None:
        subject = _string(subject, "subject", path, line)
        subject = subject if subject.strip() else None
        if subject is not None and subject not in text:
            raise file_error(path, line, f"subject {subject!r} does not occur in the text")
    for key, value in groups.items():
        if not _encodable(key):
            raise file_error(path, line, "a field name holds an invalid character (a lone surrogate)")
        if key in RESERVED:
            raise file_error(path, line, f"field {key!r} is reserved for the run directory; rename it")
        if isinstance(value, str):
            _string(value, key, path, line)
        elif value is not None and not isinstance(value, int | float):
            raise file_error(
                path, line, f"field {key!r} must be a string, number, boolean or null, got {_kind(value)}"
            )
    return Context(text=text, target=target, subject=subject, groups=dict(groups))


def _plain_context(record: dict[str, Any], path: Path, line: int, required: Fields = CONTEXT) -> Context:
    for field in required:
        if field not in record:
            raise file_error(path, line, f"missing field '{field}'")
    if required == DOCUMENT and ("target" in record or "subject" in record):
        raise file_error(
            path, line, "a document has no 'target' or 'subject' field: each of its tokens is a target"
        )
    groups = {key: value for key, value in record.items() if key not in _FIELDS}
    return _make_context(record["text"], record.get("target"), record.get("subject"), groups, path, line)


def _check_group_types(rows: Rows, path: Path) -> None:
    """One type per group field (nulls aside): a column of mixed types cannot be written to Parquet later."""
    seen: dict[str, str] = {}
    for line, context in rows:
        for key, value in context.groups.items():
            if value is None:
                continue
            kind = _kind(value)
            if seen.setdefault(key, kind) != kind:
                raise file_error(
                    path, line, f"field {key!r} is {kind} here but {seen[key]} in earlier records"
                )


def _read_jsonl(text: str, path: Path, required: Fields = CONTEXT) -> Rows:
    rows: Rows = []
    for line, raw in lines(text):
        if not raw.strip():
            continue
        record = parse_json(raw, path, line)
        if not isinstance(record, dict):
            raise file_error(path, line, f"expected a JSON object, got {_kind(record)}")
        rows.append((line, _plain_context(record, path, line, required)))
    return rows


def _read_table(text: str, path: Path, delimiter: str, required: Fields = CONTEXT) -> Rows:
    reader = csv.reader(
        io.StringIO(text, newline=""),
        delimiter=delimiter,
        quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL,
        strict=True,
    )
    header: list[str] | None = None
    rows: Rows = []
    next_line = 1
    try:
        for cells in reader:
            # A quoted cell may span lines: the record starts on the line after the previous record ended.
            line, next_line = next_line, reader.line_num + 1
            if not any(cells):
                continue
            if header is None:
                header = _header(cells, path, line, required)
                continue
            if len(cells) != len(header):
                raise file_error(
                    path, line, f"{len(cells)} cells, but the header names {len(header)} columns"
                )
            record = dict(zip(header, cells, strict=True))
            rows.append((line, _plain_context(record, path, line, required)))
    except csv.Error as exc:
        raise file_error(path, reader.line_num, f"malformed {path.suffix[1:].upper()} ({exc})") from None
    return rows


def _header(cells: list[str], path: Path, line: int, required: Fields = CONTEXT) -> list[str]:
    names = [cell.strip() for cell in cells]
    for position, name in enumerate(names, start=1):
        if not name:
            raise file_error(path, line, f"column {position} of the header has no name")
        if names.index(name) != position - 1:
            raise file_error(path, line, f"column {name!r} appears twice in the header")
    for field in required:
        if field not in names:
            found = ", ".join(map(repr, names))
            raise file_error(path, line, f"the header has no '{field}' column (columns: {found})")
    return names


def _read_txt(text: str, path: Path, required: Fields = CONTEXT) -> Rows:
    rows: Rows = []
    for line, raw in lines(text):
        if not raw.strip():
            continue
        if required == DOCUMENT:  # the whole line, tabs and all
            rows.append((line, _make_context(raw, None, None, {}, path, line)))
            continue
        parts = raw.split("\t")
        if len(parts) > 2:
            raise file_error(path, line, f"{len(parts) - 1} tabs; expected 'text<TAB>target' or 'text' alone")
        target = parts[1] if len(parts) == 2 else None
        rows.append((line, _make_context(parts[0], target, None, {}, path, line)))
    return rows


def _read_json(text: str, path: Path) -> Rows:
    items = _json_list(text, path)
    if not items:
        return []
    first_line, first = items[0]
    if not isinstance(first, dict):
        raise file_error(path, first_line, f"expected a JSON object, got {_kind(first)}")
    convert = _json_format(first, path, first_line)
    rows: Rows = []
    for line, record in items:
        if not isinstance(record, dict):
            raise file_error(path, line, f"expected a JSON object, got {_kind(record)}")
        rows.append((line, convert(record, path, line)))
    return rows


def _skip_space(text: str, pos: int) -> int:
    """The offset of the first character at or after ``pos`` that is not JSON whitespace."""
    found = _JSON_WS.match(text, pos)
    assert found is not None  # the pattern matches the empty string too
    return found.end()


def _json_list(text: str, path: Path) -> list[tuple[int, Any]]:
    """Parse a top-level JSON list, remembering the line each element starts on (json.loads forgets it)."""
    decoder = json.JSONDecoder()
    pos = _skip_space(text, 0)
    if pos == len(text):
        return []
    if text[pos] != "[":
        value = parse_json(text, path, 1)
        raise file_error(path, 1, f"expected a JSON list of records, got {_kind(value)}")
    items: list[tuple[int, Any]] = []
    # The line number at offset `counted`, advanced incrementally: counting from 0 each time is quadratic.
    line, counted = 1, 0
    pos = _skip_space(text, pos + 1)
    closed = text.startswith("]", pos)
    while not closed:
        line, counted = line + text.count("\n", counted, pos), pos
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            raise file_error(path, exc.lineno, f"malformed JSON ({exc.msg} at column {exc.colno})") from None
        except RecursionError:
            raise file_error(path, line, "malformed JSON (nested too deeply)") from None
        except ValueError as exc:
            raise file_error(path, line, f"malformed JSON ({exc})") from None
        items.append((line, value))
        pos = _skip_space(text, end)
        if text.startswith(",", pos):
            pos = _skip_space(text, pos + 1)
        elif text.startswith("]", pos):
            closed = True
        else:
            at = 1 + text.count("\n", 0, pos)
            raise file_error(path, at, "malformed JSON (expected ',' or ']' after a list element)")
    end = _skip_space(text, pos + 1)
    if end != len(text):
        raise file_error(path, 1 + text.count("\n", 0, end), "malformed JSON (extra data after the list)")
    return items


Converter = Callable[[dict[str, Any], Path, int], Context]


def _json_format(record: dict[str, Any], path: Path, line: int) -> Converter:
    if "requested_rewrite" in record:
        return _counterfact
    if "known_id" in record or {"prompt", "attribute"} <= record.keys():
        return _known_1000
    if "text" in record:
        return _plain_context
    raise file_error(
        path,
        line,
        "unrecognised record: expected CounterFact ('requested_rewrite'), known_1000 ('prompt', 'attribute') "
        "or 'text'/'target' fields",
    )


def _counterfact(record: dict[str, Any], path: Path, line: int) -> Context:
    """CounterFact (ROME): the prompt has ``{}`` for the subject; the true target is the one to trace."""
    rewrite = _get(record, "requested_rewrite", dict, "requested_rewrite", path, line)
    prompt = _get(rewrite, "prompt", str, "requested_rewrite.prompt", path, line)
    subject = _get(rewrite, "subject", str, "requested_rewrite.subject", path, line)
    if not subject.strip():
        raise file_error(path, line, "empty field 'requested_rewrite.subject'")
    if "{}" not in prompt:
        raise file_error(path, line, "field 'requested_rewrite.prompt' has no '{}' where the subject goes")
    true = _get(rewrite, "target_true", dict, "requested_rewrite.target_true", path, line)
    target = _get(true, "str", str, "requested_rewrite.target_true.str", path, line)
    groups = {"case_id": _get(record, "case_id", object, "case_id", path, line)}
    if "relation_id" in rewrite:
        groups["relation_id"] = rewrite["relation_id"]
    if "target_new" in rewrite:  # what an edit would write; the editing wing evaluates against it
        new = _get(rewrite, "target_new", dict, "requested_rewrite.target_new", path, line)
        groups["target_new"] = _get(new, "str", str, "requested_rewrite.target_new.str", path, line)
    return _make_context(prompt.replace("{}", subject, 1), target, subject, groups, path, line)


def _known_1000(record: dict[str, Any], path: Path, line: int) -> Context:
    """known_1000 (ROME): facts GPT-2 XL knew; ``attribute`` is the true object, ``prediction`` is ignored."""
    prompt = _get(record, "prompt", str, "prompt", path, line)
    attribute = _get(record, "attribute", str, "attribute", path, line)
    subject = _get(record, "subject", str, "subject", path, line)
    groups = {"known_id": _get(record, "known_id", object, "known_id", path, line)}
    if "relation_id" in record:
        groups["relation_id"] = record["relation_id"]
    return _make_context(prompt, attribute, subject, groups, path, line)


_READERS: dict[str, Callable[[str, Path], Rows]] = {
    ".jsonl": _read_jsonl,
    ".json": _read_json,
    ".csv": lambda text, path: _read_table(text, path, ","),
    ".tsv": lambda text, path: _read_table(text, path, "\t"),
    ".txt": _read_txt,
}
_DOCUMENT_READERS: dict[str, Callable[[str, Path], Rows]] = {
    ".jsonl": lambda text, path: _read_jsonl(text, path, DOCUMENT),
    ".csv": lambda text, path: _read_table(text, path, ",", DOCUMENT),
    ".tsv": lambda text, path: _read_table(text, path, "\t", DOCUMENT),
    ".txt": lambda text, path: _read_txt(text, path, DOCUMENT),
}
