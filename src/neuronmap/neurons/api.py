"""The neurons stage (``neuronmap neurons RUN``): dashboards of the mapped neurons, written into ``RUN/graph/``.

It needs the traced model (its weights and its forward pass), so it is a stage of its own above the map, which
stays torch-free; the page (``explore``) shows whatever of its tables it finds. For every neuron of
``graph/neurons.parquet`` it writes:

- ``neuron_logits.parquet``: output-token weights, the top promoted and suppressed tokens through the final norm
  and the unembedding (:mod:`neuronmap.neurons.logits`);
- ``neuron_examples.parquet``: the top-activating examples from the run's own texts with a window of per-token
  activations for shading (:mod:`neuronmap.neurons.examples`);
- ``neuron_hist.parquet``: each neuron's activation histogram over the same candidates.

A map replaces ``graph/`` whole, so a new map leaves no stale dashboard behind: run ``neuronmap neurons`` again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuronmap.errors import NeuronmapError
from neuronmap.models.loader import LoadedModel
from neuronmap.neurons.config import NeuronsConfig
from neuronmap.neurons.examples import Text, top_activating
from neuronmap.neurons.logits import output_token_weights
from neuronmap.neurons.names import EXAMPLES, HISTOGRAMS, LOGITS, OUTPUTS, STAGE
from neuronmap.progress import progress_bar
from neuronmap.rundir import (
    CONTEXTS,
    DOCUMENTS,
    GRAPH,
    RunDir,
    atomic_write_group,
    parquet_writer,
    read_parquet,
    stage,
)
from neuronmap.trace.events import document_windows


@dataclass
class NeuronsResult:
    path: Path  # RUN/graph
    logits: pd.DataFrame
    examples: pd.DataFrame
    histograms: pd.DataFrame
    summary: dict[str, Any]
    reused: bool = False

    @classmethod
    def load(cls, run: RunDir, summary: dict[str, Any] | None = None, reused: bool = False) -> NeuronsResult:
        graph = run.path / "graph"
        return cls(graph, read_parquet(graph / LOGITS), read_parquet(graph / EXAMPLES),
                   read_parquet(graph / HISTOGRAMS), summary or {}, reused)  # fmt: skip


def run_texts(rd: RunDir, manifest: dict[str, Any], lm: LoadedModel, max_texts: int | None) -> list[Text]:
    """The model inputs of the run's texts with their candidate positions (``examples`` module docstring)."""
    contexts = read_parquet(rd.path / CONTEXTS)
    if "doc_id" in contexts.columns:  # each-token: documents, in the trace's windows
        documents = read_parquet(rd.path / DOCUMENTS, columns=["doc_id", "token_ids"])
        if max_texts is not None:
            documents = documents.head(max_texts)
        params = (manifest["stages"].get("trace") or {}).get("params") or {}
        min_prefix = int(params.get("min_prefix") or 1)
        events: dict[int, dict[int, int]] = {}
        for cid, doc, pos in zip(
            contexts["context_id"], contexts["doc_id"], contexts["position"], strict=True
        ):
            events.setdefault(int(doc), {})[int(pos)] = int(cid)
        texts = []
        for doc, ids in zip(documents["doc_id"], documents["token_ids"], strict=True):
            of_doc = events.get(int(doc), {})
            for w in document_windows(int(doc), [int(t) for t in ids], lm.window, min_prefix):
                local = [p - w.start for p in range(w.first, w.stop) if p in of_doc]
                if local:
                    texts.append(Text(w.input_ids, tuple(local), tuple(of_doc[p + w.start] for p in local),
                                      int(doc), w.start))  # fmt: skip
        return texts
    if max_texts is not None:
        contexts = contexts.head(max_texts)
    targets = (
        ["".join(t) for t in contexts["target_tokens"]]
        if "target_tokens" in contexts.columns
        else contexts["target"].astype(str).tolist()
    )
    return [
        Text(tuple(int(t) for t in ids), (int(pos),), (int(cid),), -1, 0, target)
        for cid, ids, pos, target in zip(
            contexts["context_id"], contexts["input_ids"], contexts["position"], targets, strict=True
        )
    ]


def _traced_model(rd: RunDir, manifest: dict[str, Any], loaded: LoadedModel | None, model: str | None,
                  device: str | None, dtype: str | None) -> LoadedModel:  # fmt: skip
    traced = manifest.get("model") or {}
    if loaded is None:
        from neuronmap.models.loader import load_model

        spec = model or traced.get("spec")
        if not spec:
            raise NeuronmapError(f"{rd.path}: run.json names no model; pass --model")
        loaded = load_model(spec, device=device, dtype=dtype or traced.get("dtype"))
    if traced.get("weights_hash") and loaded.weights_hash != traced["weights_hash"]:
        raise NeuronmapError(f"{rd.path}: was traced with other weights than '{loaded.spec}'")
    return loaded


def _map_fingerprint(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in ("params", "trace", "finished_at")}


def neurons_run(
    run: str | Path | RunDir,
    *,
    loaded: LoadedModel | None = None,
    model: str | None = None,
    device: str | None = None,
    dtype: str | None = None,
    force: bool = False,
    progress: bool = False,
    **params: Any,
) -> NeuronsResult:
    """Write the dashboards of a mapped run's neurons into ``RUN/graph/`` (module docstring); ``params`` are the
    fields of :class:`NeuronsConfig`. Done already with the same parameters on the same map: loaded, not redone;
    other parameters need ``force``."""
    cfg = NeuronsConfig(**params)
    cfg.validate()
    rd = run if isinstance(run, RunDir) else RunDir(run)
    manifest = rd.manifest()
    rd.require_stage("trace")
    mapped = rd.stage("map") or {}
    if mapped.get("status") != "complete":
        raise NeuronmapError(f"{rd.path}: has no map yet; run `neuronmap map {rd.path}` first")
    graph = rd.path / GRAPH
    fingerprint = _map_fingerprint(mapped)
    with stage(rd, STAGE, cfg.record()) as st:
        same_map = (st.previous or {}).get("map") == fingerprint and all(
            (graph / name).is_file() for name in OUTPUTS
        )
        if st.complete and same_map and not force:
            if not st.changes():
                return NeuronsResult.load(rd, (st.previous or {}).get("summary"), reused=True)
            raise NeuronmapError(
                f"{rd.path}: neuron dashboards already made with other parameters ({'; '.join(st.changes())}); "
                "pass --force to replace them"
            )
        lm = _traced_model(rd, manifest, loaded, model, device, dtype)
        neurons = read_parquet(graph / "neurons.parquet", columns=["layer", "neuron"])
        layers, index = neurons["layer"].to_numpy(np.int64), neurons["neuron"].to_numpy(np.int64)
        st.wrote(*(f"{GRAPH}/{name}" for name in OUTPUTS))
        st.start(map=fingerprint)
        started = time.time()
        with progress_bar("output tokens", total=len(neurons), unit="neurons", enabled=progress) as bar:
            logits = output_token_weights(lm, layers, index, cfg.top_tokens, progress=bar.advance)
        logit_seconds = time.time() - started
        texts = run_texts(rd, manifest, lm, cfg.max_texts)
        with progress_bar("top-activating examples", total=len(texts), unit="texts", enabled=progress) as bar:
            found = top_activating(lm, texts, layers, index, k=cfg.examples, before=cfg.before,
                                   after=cfg.after, batch_size=cfg.batch_size, bins=cfg.bins,
                                   progress=bar.advance)  # fmt: skip
        atomic_write_group([(graph / LOGITS, parquet_writer(logits)),
                            (graph / EXAMPLES, parquet_writer(found.examples)),
                            (graph / HISTOGRAMS, parquet_writer(found.histograms))])  # fmt: skip
        seconds = time.time() - started
        summary = {
            "neurons": len(neurons),
            "texts": len(texts),
            "positions": found.positions,
            "examples": found.examples.num_rows,
            "model": lm.spec,
        }
        # wall-clock under "timing", as the other stages keep it
        st.finish(
            summary=summary, timing={"seconds": round(seconds, 2), "logit_seconds": round(logit_seconds, 2)}
        )
    return NeuronsResult(graph, logits, found.examples.to_pandas(), found.histograms.to_pandas(), summary)
