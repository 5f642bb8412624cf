"""Synthetic run directories for the map stage: a planted partition of neurons, each part firing for its own
tokens, written with the store functions exactly as the trace stage writes a run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuronmap.rundir import RunDir, atomic_write_parquet


def planted_trace(
    n_groups: int = 4,
    n_layers: int = 3,
    d_mlp: int = 40,
    tokens_per_group: int = 5,
    contexts_per_group: int = 40,
    neurons_per_context: int = 16,
    noise: int = 3,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Contexts and scores in which the neurons of group g (a contiguous block of each layer) score high on the
    contexts whose target is one of group g's tokens; plus a few weak random neurons and negative scores.
    Returns (contexts, scores, truth) with truth[layer, neuron] = group."""
    rng = np.random.default_rng(seed)
    truth = np.tile(np.arange(d_mlp) * n_groups // d_mlp, (n_layers, 1))
    members = [np.argwhere(truth == g) for g in range(n_groups)]
    contexts, scores = [], []
    for cid in range(n_groups * contexts_per_group):
        g = cid % n_groups
        token = 1000 + g * tokens_per_group + int(rng.integers(tokens_per_group))
        text_ids = [7, 8, 100 + g]
        contexts.append(
            {
                "context_id": cid,
                "text": f"context {cid}",
                "target": f" tok{token}",
                "target_ids": [token, 9],
                "subject": None if cid % 3 else f"s{cid}",
                "p_target": 0.5,
                "input_ids": [*text_ids, token],
                "tokens": ["a", "b", f" in{100 + g}", f" tok{token}"],
                "target_tokens": [f" tok{token}", "!"],
                "position": 2,
                "relation": f"r{g}",
            }
        )
        picked = members[g][rng.choice(len(members[g]), neurons_per_context, replace=False)]
        flat = rng.choice(n_layers * d_mlp, noise + 2, replace=False)
        rows = [(layer, neuron, rng.uniform(1.0, 2.0)) for layer, neuron in picked]
        rows += [(f // d_mlp, f % d_mlp, rng.uniform(0.05, 0.3)) for f in flat[:noise]]
        rows += [(f // d_mlp, f % d_mlp, -rng.uniform(0.5, 1.0)) for f in flat[noise:]]
        seen = set()
        for layer, neuron, score in rows:
            if (layer, neuron) not in seen:
                seen.add((layer, neuron))
                scores.append((cid, layer, neuron, score))
    score_table = pd.DataFrame(scores, columns=["context_id", "layer", "neuron", "score"]).astype(
        {"context_id": np.int64, "layer": np.int32, "neuron": np.int32, "score": np.float32}
    )
    return pd.DataFrame(contexts), score_table, truth


def write_run(
    path: Path, contexts: pd.DataFrame, scores: pd.DataFrame | None, *, n_layers: int, d_mlp: int
) -> Path:
    """A run directory as the trace stage leaves it (``scores=None``: no scores.parquet)."""
    rd = RunDir(path)
    rd.write_manifest(
        {
            "model": {
                "spec": "synthetic",
                "arch": "llama",
                "n_layers": n_layers,
                "d_mlp": d_mlp,
                "weights_hash": "0",
            },
            "stages": {"trace": {"status": "complete", "method": "synthetic", "top_k": 32}},
        }
    )
    atomic_write_parquet(contexts, path / "contexts.parquet")
    if scores is not None:
        atomic_write_parquet(scores, path / "scores.parquet")
    return path


@pytest.fixture
def planted_run(tmp_path: Path):
    """Factory: planted_run(name="run", **planted_trace kwargs) -> (run path, truth)."""

    def make(name: str = "run", **kwargs) -> tuple[Path, np.ndarray]:
        contexts, scores, truth = planted_trace(**kwargs)
        n_layers, d_mlp = truth.shape
        return write_run(tmp_path / name, contexts, scores, n_layers=n_layers, d_mlp=d_mlp), truth

    return make


@pytest.fixture
def planted():
    """planted(**planted_trace kwargs) -> (contexts, scores, truth)."""
    return planted_trace
