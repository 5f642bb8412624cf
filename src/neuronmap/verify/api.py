"""The causal check of a map's clusters: ``verify_clusters`` (what ``neuronmap verify`` calls).

The map says a cluster of neurons stands for some tokens because the trace scored its neurons high on events
predicting them. That is correlational. The check removes the cluster's neurons from the model (zero or mean
ablation, every position; :mod:`neuronmap.verify.events`) and asks whether the log-probability of the targets falls
more on the cluster's own events (those whose token is among its tokens) than on the others, against random neuron
sets of the same size and layer profile (:mod:`neuronmap.verify.stats`, which states the test and the pass rule).

A cluster's tokens are its top ``tokens`` (10) tokens of ``cluster_tokens.parquet`` that are over-represented in it
(score > 0, i.e. lift > 1), the tokens its coherence is measured on; an event's token is the one the map linked it
to (its first target token, or with ``--token-field input`` its input token).

**Cost.** One clean pass over the events used, then per cluster (1 + ``null_samples``) ablated passes over its
events: at most ``max_events`` of them (all in-events up to half the budget or more, a seeded sample of the rest).
A row of an each-token run is a window and serves all its events. The blocks below a cluster's lowest layer run
once per batch, not once per set.

Outputs: ``RUN/graph/verify.parquet`` (one row per cluster checked), a ``verify`` section in
``RUN/graph/summary.json`` and a ``verify`` stage in ``run.json`` (parameters, the map it checked, seconds). A map
made again replaces ``graph/`` and with it the check. The same run, parameters and seed give the same table.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from neuronmap.errors import NeuronmapError
from neuronmap.progress import progress_bar
from neuronmap.rundir import (
    DOCUMENTS,
    GRAPH,
    RunDir,
    atomic_write_json,
    atomic_write_parquet,
    read_parquet,
    stage,
)
from neuronmap.verify.config import VerifyConfig
from neuronmap.verify.stats import (
    ALPHA,
    BOOTSTRAP_RESAMPLES,
    CONFIDENCE,
    adjust,
    cluster_test,
    draw_null_sets,
    neuron_set,
    passes,
    sample_events,
)

OUTPUT = "verify.parquet"
COLUMNS = ("cluster", "n_neurons", "n_tokens", "n_events_in", "n_events_out", "effect_in", "effect_out", "diff",
           "ci_low", "ci_high", "null_mean", "null_sd", "p", "p_adjusted", "passes", "null_pool")  # fmt: skip


@dataclass
class VerifyResult:
    """The check of a map: ``table`` (graph/verify.parquet), ``summary`` (summary.json's ``verify``) and, when
    computed here, ``effects``: one row per (cluster, event) with the clean and ablated log p (not written)."""

    path: Path
    table: pd.DataFrame
    summary: dict[str, Any]
    effects: pd.DataFrame | None = field(default=None)
    seconds: float | None = None
    reused: bool = False


def _map_fingerprint(rd: RunDir) -> dict[str, Any]:
    stage = rd.stage("map") or {}
    if stage.get("status") != "complete" or not (rd.path / GRAPH / "summary.json").is_file():
        raise NeuronmapError(f"{rd.path}: has no map yet; run `neuronmap map {rd.path}` first")
    return {"params": stage.get("params"), "finished_at": stage.get("finished_at")}


def _chosen(clusters: pd.DataFrame, cfg: VerifyConfig) -> list[int]:
    known = clusters["cluster"].to_numpy(np.int64)
    if cfg.clusters is None:
        return [int(c) for c in known[clusters["size"].to_numpy() >= cfg.min_size]]
    unknown = sorted(set(cfg.clusters) - set(known.tolist()))
    if unknown:
        names = ", ".join(str(c) for c in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        raise NeuronmapError(
            f"--clusters: unknown cluster id(s) {names}; the map has clusters 0..{int(known.max())}"
        )
    return list(cfg.clusters)


def _model(rd: RunDir, manifest: dict[str, Any], device: str | None, loaded: Any) -> Any:
    from neuronmap.models.loader import load_model

    traced = manifest.get("model") or {}
    if loaded is None:
        if not traced.get("spec"):
            raise NeuronmapError(f"{rd.path}: run.json names no model")
        loaded = load_model(traced["spec"], device=device, dtype=traced.get("dtype"))
    if traced.get("weights_hash") and loaded.weights_hash != traced["weights_hash"]:
        raise NeuronmapError(f"{rd.path}: was traced with other weights than '{loaded.spec}'")
    if not loaded.adapter.is_causal:
        raise NeuronmapError(f"{rd.path}: the traced model is not a causal language model")
    return loaded


def _section(cfg: VerifyConfig, table: pd.DataFrame, neurons: int, fingerprint: dict, cost: dict) -> dict:
    tested = table[table["p"].notna()]
    passing = tested[tested["passes"]]
    return {
        "params": cfg.record(),
        "output": OUTPUT,
        "statistic": "diff = mean effect on the cluster's events - mean effect on the others; effect = "
        "log p(target | cluster ablated) - log p(target | clean)",
        "rule": f"passes: BH-adjusted p <= {ALPHA} and the {CONFIDENCE:.0%} bootstrap interval of diff below 0",
        "null": "random neuron sets with the cluster's neurons per layer, from the map's other neurons of the "
        "layer (null_pool says where a layer needed more)",
        "bootstrap": f"percentile, {BOOTSTRAP_RESAMPLES} resamples (scipy.stats.bootstrap)",
        "p_floor": 1 / (cfg.null_samples + 1),
        "alpha": ALPHA,
        "clusters": len(table),
        "tested": len(tested),
        "passing": [int(c) for c in passing["cluster"]],
        "share_passing": len(passing) / len(tested) if len(tested) else None,
        "passing_neurons": int(passing["n_neurons"].sum()),
        "passing_neuron_share": float(passing["n_neurons"].sum() / neurons) if neurons else None,
        "map": fingerprint,
        "cost": cost,
    }


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def verify_clusters(
    run: str | Path | RunDir,
    clusters: Sequence[int] | None = None,
    *,
    ablate: str = "zero",
    null_samples: int = 49,
    max_events: int | None = 256,
    tokens: int = 10,
    min_size: int = 2,
    seed: int = 0,
    device: str | None = None,
    batch_size: int = 16,
    force: bool = False,
    progress: bool = False,
    loaded: Any = None,
) -> VerifyResult:
    """Ablate each cluster's neurons and test whether its own tokens suffer most (module docstring); write
    ``graph/verify.parquet`` and summary.json's ``verify``. A check already made with the same parameters on the
    same map is loaded unless ``force``. ``loaded``: the traced model, already loaded (its weights are checked).
    """
    cfg = VerifyConfig(None if clusters is None else tuple(clusters), ablate, null_samples, max_events, tokens,
                       min_size, seed)  # fmt: skip
    if batch_size < 1:
        raise NeuronmapError(f"--batch-size {batch_size!r}: must be >= 1")
    rd = run if isinstance(run, RunDir) else RunDir(run)
    manifest = rd.manifest()
    rd.require_stage("trace")
    fingerprint = _map_fingerprint(rd)
    folder = rd.path / GRAPH
    cluster_table = read_parquet(folder / "clusters.parquet")
    chosen = _chosen(cluster_table, cfg)
    with stage(rd, "verify", cfg.record()) as st:
        previous = st.previous or {}
        same = st.complete and not st.changes() and previous.get("map") == fingerprint
        if same and not force and (folder / OUTPUT).is_file():
            summary = json.loads((folder / "summary.json").read_text()).get("verify") or {}
            return VerifyResult(folder, read_parquet(folder / OUTPUT), summary, reused=True)
        st.wrote(f"{GRAPH}/{OUTPUT}")
        st.start(map=fingerprint)
        started = time.time()
        table, effects, cost = _compute(rd, manifest, cfg, chosen, device, batch_size, progress, loaded)
        seconds = time.time() - started
        neurons = int(cluster_table["size"].sum())
        section = _clean(_section(cfg, table, neurons, fingerprint, cost))
        atomic_write_parquet(table, folder / OUTPUT)
        summary = json.loads((folder / "summary.json").read_text())
        summary["verify"] = section
        atomic_write_json(summary, folder / "summary.json")
        st.finish(timing={"seconds": round(seconds, 2)})
    return VerifyResult(folder, table, section, effects, seconds)


def _compute(
    rd: RunDir,
    manifest: dict[str, Any],
    cfg: VerifyConfig,
    chosen: list[int],
    device: str | None,
    batch_size: int,
    progress: bool,
    loaded: Any,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    from neuronmap.verify.events import event_logprobs, events_from_tables, n_batches, neuron_means

    folder = rd.path / GRAPH
    summary = json.loads((folder / "summary.json").read_text())
    token_field = (summary.get("params") or {}).get("token_field", "target")
    neurons = read_parquet(folder / "neurons.parquet", columns=["layer", "neuron", "cluster"])
    ct = read_parquet(folder / "cluster_tokens.parquet")
    ct = ct[(ct["partition"] == "cluster") & (ct["rank"] < cfg.tokens) & (ct["score"] > 0)]
    lm = _model(rd, manifest, device, loaded)
    contexts = rd.contexts()
    trace = manifest["stages"]["trace"]
    documents = read_parquet(rd.path / DOCUMENTS) if "doc_id" in contexts.columns else None
    events = events_from_tables(
        contexts,
        documents,
        token_field,
        trace.get("window", lm.window),
        int((trace.get("params") or {}).get("min_prefix", 8)),
    )
    layers, index, labels = (neurons[c].to_numpy(np.int64) for c in ("layer", "neuron", "cluster"))
    pool = neuron_set(layers, index)
    plans = []
    for c in chosen:
        rng = np.random.default_rng([cfg.seed, c])
        own = neuron_set(layers[labels == c], index[labels == c])
        cluster_tokens = ct.loc[ct["cluster"] == c, "token_id"].to_numpy(np.int64)
        inner, outer = sample_events(np.isin(events.token, cluster_tokens), cfg.max_events, rng)
        nulls, level = draw_null_sets(own, pool, lm.d_mlp, cfg.null_samples, rng)
        testable = len(inner) >= 2 and len(outer) >= 2
        plans.append((c, rng, own, len(cluster_tokens), inner, outer, nulls, level, testable))
    used = np.unique(np.concatenate([np.r_[p[4], p[5]] for p in plans] or [np.zeros(0, np.int64)]))
    used = used.astype(np.int64)
    total = n_batches(events, used, batch_size) * (2 if cfg.ablate == "mean" else 1)
    total += sum(
        (1 + cfg.null_samples) * n_batches(events, np.r_[p[4], p[5]], batch_size) for p in plans if p[8]
    )
    rows, frames = [], []
    with progress_bar("verifying clusters", total=total, unit="batches", enabled=progress) as bar:
        means = neuron_means(lm, events, used, batch_size) if cfg.ablate == "mean" else None
        if means is not None:
            bar.advance(n_batches(events, used, batch_size))
        clean = np.full(len(events), np.nan)
        if len(used):
            clean[used] = event_logprobs(
                lm, events, used, [None], batch_size=batch_size, advance=bar.advance
            )[0]
        for c, rng, own, n_tokens, inner, outer, nulls, level, testable in plans:
            subset = np.r_[inner, outer].astype(np.int64)
            n_in = len(inner)
            if testable:
                logp = event_logprobs(
                    lm, events, subset, [own, *nulls], means=means, batch_size=batch_size, advance=bar.advance
                )
                effect = logp - clean[subset][None, :]
                null_diffs = effect[1:, :n_in].mean(1) - effect[1:, n_in:].mean(1)
                test = cluster_test(effect[0, :n_in], effect[0, n_in:], null_diffs, rng)
                frames.append(
                    pd.DataFrame(
                        {
                            "cluster": np.int32(c),
                            "context_id": events.context_id[subset],
                            "inside": np.arange(len(subset)) < n_in,
                            "clean": clean[subset],
                            "ablated": logp[0],
                            "effect": effect[0],
                        }
                    )
                )
            else:
                test = cluster_test(np.zeros(0), np.zeros(0), np.zeros(0), rng)
            rows.append(
                {
                    "cluster": c,
                    "n_neurons": int(sum(len(v) for v in own.values())),
                    "n_tokens": n_tokens,
                    "n_events_in": n_in,
                    "n_events_out": len(outer),
                    **asdict(test),
                    "null_pool": level,
                }
            )
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("p_adjusted", "passes")])
    table["p_adjusted"] = adjust(table["p"].to_numpy(np.float64))
    table["passes"] = passes(table)
    table = table[list(COLUMNS)].astype(
        {
            "cluster": np.int32,
            "n_neurons": np.int32,
            "n_tokens": np.int32,
            "n_events_in": np.int32,
            "n_events_out": np.int32,
            "passes": bool,
        }  # fmt: skip
    )
    tested = [p for p in plans if p[8]]
    cost = {  # batches depend on --batch-size, not a parameter of the check: counted in events
        "events": len(used),
        "ablated_sets": (1 + cfg.null_samples) * len(tested),
        "ablated_event_rows": sum((1 + cfg.null_samples) * (len(p[4]) + len(p[5])) for p in tested),
    }
    effects = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return table, effects, cost
