"""Memory planned before a batch runs: the budget, the estimate against a measured peak, and batches split to fit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from bench.bench_window import measure_window_edge
from neuronmap.errors import NeuronmapError
from neuronmap.models import memory
from neuronmap.models.memory import Budget, memory_budget
from neuronmap.rundir import RunDir
from neuronmap.trace.plan import method_bytes, plan_batches
from neuronmap.trace.runner import TraceConfig, trace_run


def test_budget_sizes_and_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda device="cpu": 10 * 2**30)
    assert memory_budget("6GB").bytes == 6 * 2**30
    assert memory_budget("1.5G").bytes == int(1.5 * 2**30)
    assert memory_budget("800mb").bytes == 800 * 2**20
    assert memory_budget("2GiB").bytes == 2 * 2**30
    assert memory_budget(123 * 2**20).bytes == 123 * 2**20
    assert memory_budget("50%").bytes == 5 * 2**30
    default = memory_budget(None)
    assert default.bytes == int(10 * 2**30 * memory.DEFAULT_SHARE)
    assert default.describe() == "7.0 GB (70% of 10.0 GB available)"
    for bad in ("lots", "0%", "150%", "12", "-1GB", "5 parsecs"):
        with pytest.raises(NeuronmapError, match="--max-memory"):
            memory_budget(bad)


def test_the_estimate_grows_with_rows_tokens_and_gradient_layers(tiny_models) -> None:
    lm = tiny_models("tiny-llama", "float32")
    fp = lm.footprint
    assert fp.weights == sum(p.numel() * 4 for p in lm.model.parameters())
    base = fp.pass_bytes(1, 100)
    assert fp.pass_bytes(2, 100) > base and fp.pass_bytes(1, 200) > base
    assert fp.pass_bytes(1, 100, grad_layers=2) - fp.pass_bytes(1, 100, grad_layers=1) == 100 * fp.per_token(
        memory.SAVED
    )


def _config(**kw: object) -> TraceConfig:
    return TraceConfig(**{"batch_size": 4, "part_size": 6, **kw})  # type: ignore[arg-type]


def test_plan_splits_only_what_does_not_fit() -> None:
    lengths = [(10, 1)] * 3 + [(100, 1)] + [(10, 1)] * 4

    def cost(rows: int, tokens: int, targets: int, chunk: int) -> int:
        return rows * tokens

    roomy = plan_batches(lengths, _config(), cost, Budget(10**6, "test"), str)
    assert roomy.slices == [range(0, 4), range(4, 6), range(6, 8)]  # batches start where parts start
    tight = plan_batches(lengths, _config(), cost, Budget(150, "test"), str)
    assert tight.slices == [range(0, 2), range(2, 3), range(3, 4), range(4, 6), range(6, 8)]
    assert [i for r in tight.slices for i in r] == list(range(8))
    with pytest.raises(NeuronmapError, match=r"^line 4: 100 tokens need about .* more than the .* \(test\)"):
        plan_batches(lengths, _config(), cost, Budget(99, "test"), lambda i: f"line {i + 1}")


def test_plan_shrinks_the_copies_of_ablation_first() -> None:
    def cost(rows: int, tokens: int, targets: int, chunk: int) -> int:
        return rows * tokens * chunk

    plan = plan_batches([(10, 1)] * 4, _config(method="ablation"), cost, Budget(80, "test"), str)
    assert plan.chunk == 8 and plan.slices == [range(0, 1), range(1, 2), range(2, 3), range(3, 4)]
    assert plan_batches([(10, 1)] * 4, _config(method="ablation"), cost, Budget(10**6, "t"), str).chunk == 32


FACTS = [f"City number {i} lies in the country of" for i in range(6)]


def _facts(tmp_path: Path) -> Path:
    path = tmp_path / "ctx.jsonl"
    path.write_text(
        "".join(json.dumps({"text": t + " x" * i, "target": "France"}) + "\n" for i, t in enumerate(FACTS))
    )
    return path


@pytest.mark.parametrize("method", ["attribution", "ablation"])
def test_a_split_trace_gives_the_scores_of_an_unsplit_one(tmp_path: Path, tiny_models, method: str) -> None:
    ctx = _facts(tmp_path)
    kw = {"contexts": str(ctx), "model": "tiny-gpt2", "dtype": "float64", "keep": "all", "method": method,
          "batch_size": 6, "candidates": 16, "progress": False}  # fmt: skip
    whole = trace_run(out=tmp_path / "whole", **kw)
    lm = tiny_models("tiny-gpt2")
    config = TraceConfig(method=method, batch_size=6)
    tokens = max(len(ids) for ids in whole.contexts["input_ids"])
    # room for two contexts (attribution) or for a quarter of ablation's copies per forward
    fits = method_bytes(lm.footprint, config, [0, 1], 2, tokens, 1, 12)
    split = trace_run(out=tmp_path / "split", max_memory=fits, **kw)
    plan = RunDir(tmp_path / "split").stage("trace")["timing"]["memory"]
    unsplit = RunDir(tmp_path / "whole").stage("trace")["timing"]["memory"]
    assert unsplit["batches"] == 1 and unsplit["chunk"] == 48
    if method == "attribution":
        assert plan["batches"] == 4 and plan["chunk"] == 48  # 6 -> 3 + 3 -> 1 + 2 + 1 + 2
    else:
        assert plan["batches"] == 1 and plan["chunk"] == 12
    pd.testing.assert_frame_equal(split.scores, whole.scores, rtol=1e-9)
    assert split.summary["contexts_kept"] == whole.summary["contexts_kept"] == 6


def test_a_context_that_cannot_fit_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    ctx = _facts(tmp_path)
    with pytest.raises(
        NeuronmapError,
        match=rf"^{ctx}: line 1: 8 tokens need about \d+ MB for attribution, more than the 20 MB \(--max-memory 20MB\)",
    ):
        trace_run(
            out=tmp_path / "run", contexts=str(ctx), model="tiny-gpt2", max_memory="20MB", progress=False
        )
    assert not (tmp_path / "run").exists()


def test_the_estimate_covers_a_measured_peak_on_a_tiny_model(tmp_path: Path) -> None:
    """At tiny-gpt2's window edge; SmolLM2's (8,192 tokens, minutes) is the benchmark's, with its 2.5x bound:
    ``python -m bench --only window``."""
    got = measure_window_edge("tiny-gpt2", tmp_path, layer=0)
    assert got["tokens"] == got["window"] == 256
    assert 0 < got["peak"] <= got["estimate"], got
