"""The raw material of the shape measures, taken at every subject token (the study then measures a fact where
its causal effect is largest, and at the last subject token as ROME's convention).

- ``neuron_attribution``: the trace stage's ``attribution`` method (activation x gradient of the target's
  log-probability) per position, for batches of facts; each fact's (subject tokens, layers, neurons) scores, and
  whether the model knows the fact (every target token top-1).
- ``causal_profiles``: the edit wing's causal tracing (``hidden``, ``mlp``, ``attn``), restoring at each subject
  token alone (or the last only, with ``positions="subject_last"``), on the traced layers; the indirect effect
  per (kind, layer, subject token).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from neuronmap.edit.dsets import Fact
from neuronmap.edit.experiments.causal_trace import TraceSettings, trace_fact
from neuronmap.edit.prompts import encode_fact
from neuronmap.models.loader import LoadedModel
from neuronmap.progress import progress_bar
from neuronmap.rundir import kept
from neuronmap.study.facts import StudyFact
from neuronmap.trace.batch import collate
from neuronmap.trace.methods import attribution


def neuron_attribution(
    lm: LoadedModel,
    facts: Sequence[StudyFact],
    opening: Sequence[int] = (),
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[dict[int, np.ndarray], dict[int, dict[str, float]]]:
    """Per fact id: attribution scores (subject tokens, layers, d_mlp), and the clean check (``known``,
    ``p_true``)."""
    layers = list(range(lm.n_layers))
    scores: dict[int, np.ndarray] = {}
    clean: dict[int, dict[str, float]] = {}
    with progress_bar("attribution", total=len(facts), unit="fact", enabled=progress) as bar:
        for start in range(0, len(facts), batch_size):
            chunk = list(facts[start : start + batch_size])
            encoded = [
                encode_fact(lm.tokenizer, f.prompt, f.subject, f.target_true, "", opening) for f in chunk
            ]
            batch = collate(encoded, lm.tokenizer.pad_token_id, lm.device)
            result = attribution(lm, batch, layers, positions="all", per_position=True)
            for b, (fact, enc) in enumerate(zip(chunk, encoded, strict=True)):
                assert enc.subject_span is not None  # encode_fact sets it
                first, stop = enc.subject_span
                scores[fact.fact_id] = result.scores[b, first:stop].double().cpu().numpy()
                clean[fact.fact_id] = {
                    "known": bool(result.correct[b]),
                    "p_true": float(result.logprob[b].exp()),
                }
            bar.advance(len(chunk))
    return scores, clean


def causal_profiles(
    lm: LoadedModel,
    facts: Sequence[StudyFact],
    settings: TraceSettings,
    progress: bool = True,
    parts: Path | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(profiles: fact_id, kind, layer, subject_index (0: the subject's first token), last (its last token),
    token, effect, indirect; per fact: fact_id, p_clean, p_corrupted). ``parts``: a folder where each fact's
    trace is kept as it is done and read back on a rerun (``rundir.kept``; the noise is seeded per fact)."""
    tables, rows = [], []
    with progress_bar("causal trace", total=len(facts), unit="fact", enabled=progress) as bar:
        for f in facts:
            part = None if parts is None else parts / f"trace-{f.fact_id:05d}.parquet"
            found = part is not None and part.is_file()
            table, extra = kept(part, partial(_trace_one, lm, f, settings))
            tables.append(table)
            rows.append({"fact_id": f.fact_id, **extra})
            if found:
                bar.skip(1)
            else:
                bar.advance()
    profiles = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=PROFILE_COLUMNS)
    return profiles, pd.DataFrame(rows, columns=["fact_id", "p_clean", "p_corrupted"])


PROFILE_COLUMNS = ["fact_id", "kind", "layer", "subject_index", "last", "token", "effect", "indirect"]


def _trace_one(
    lm: LoadedModel, f: StudyFact, settings: TraceSettings
) -> tuple[pd.DataFrame, dict[str, float]]:
    tr = trace_fact(lm, Fact(f.fact_id, f.prompt, f.subject, f.target_true, f.relation), settings)
    index = tr.table["position"] - tr.span[0]
    table = tr.table.assign(
        fact_id=f.fact_id, subject_index=index, last=tr.table["position"] == tr.span[1] - 1
    )
    return table[PROFILE_COLUMNS], {"p_clean": tr.p_clean, "p_corrupted": tr.p_corrupted}
