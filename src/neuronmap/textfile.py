"""Reading the users' text files (contexts, labelled data, corpora) with errors that name the file and line."""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from neuronmap.errors import NeuronmapError


def file_error(path: Path, line: int | None, message: str) -> NeuronmapError:
    return NeuronmapError(f"{path}: line {line}: {message}" if line is not None else f"{path}: {message}")


def read_utf8(path: Path, what: str = "file") -> str:
    """The file's text; ``what`` names the kind of file a folder was given for ("a context file", ...)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise file_error(path, None, "no such file") from None
    except IsADirectoryError:
        raise file_error(path, None, f"is a directory, not {what}") from None
    except OSError as exc:
        raise file_error(path, None, f"cannot read the file ({exc.strerror or exc})") from None
    data = data.removeprefix(codecs.BOM_UTF8)  # spreadsheet exports start with one
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise file_error(path, data.count(b"\n", 0, exc.start) + 1, "not valid UTF-8 text") from None


def lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) pairs. Only "\\n" ends a line: str.splitlines also splits at characters such as
    U+2028 that JSON strings may hold, which would break records and shift line numbers against an editor's."""
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.removesuffix("\r")


def parse_json(raw: str, path: Path, line: int) -> Any:
    """One JSON document that starts on ``line``; its errors point at the line they are on."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise file_error(
            path, line + exc.lineno - 1, f"malformed JSON ({exc.msg} at column {exc.colno})"
        ) from None
    except RecursionError:
        raise file_error(path, line, "malformed JSON (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise file_error(path, line, f"malformed JSON ({exc})") from None
