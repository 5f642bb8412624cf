"""The CUDA code paths: traces on a GPU agree with the CPU within float tolerance (kernels reduce in another order,
so ties at the top-k cut may swap; the README says so). Run only where torch sees a GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from neuronmap.trace.runner import trace_run

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU; torch sees none")

FACTS = [
    {"text": "The Eiffel Tower is located in the city of", "target": "Paris", "subject": "Eiffel Tower"},
    {"text": "Tokyo is the capital of", "target": "Japan", "subject": "Tokyo"},
    {"text": "The Colosseum is in", "target": " Rome", "subject": "Colosseum"},
]


def _agree(cpu: pd.DataFrame, gpu: pd.DataFrame) -> None:
    key = ["context_id", "layer", "neuron"]
    both = cpu.merge(gpu, on=key, suffixes=("_cpu", "_gpu"))
    assert len(both) >= 0.9 * len(cpu)  # ties at the cut may differ, not more
    assert both["score_gpu"].to_numpy() == pytest.approx(both["score_cpu"].to_numpy(), rel=1e-3, abs=1e-5)


@pytest.mark.parametrize("model", ["tiny-gpt2", "tiny-llama"])
@pytest.mark.parametrize("method", ["attribution", "integrated-gradients", "ablation", "causal"])
def test_a_trace_on_the_gpu_equals_the_cpu(tmp_path: Path, model: str, method: str) -> None:
    facts = tmp_path / "facts.jsonl"
    facts.write_text("".join(json.dumps(f) + "\n" for f in FACTS))
    runs = {
        device: trace_run(
            out=tmp_path / device,
            model=model,
            contexts=str(facts),
            method=method,
            top_k=16,
            device=device,
            progress=False,
        )  # fmt: skip
        for device in ("cpu", "cuda")
    }
    _agree(runs["cpu"].scores, runs["cuda"].scores)


def test_each_token_on_the_gpu_equals_the_cpu(tmp_path: Path) -> None:
    docs = tmp_path / "docs.txt"
    docs.write_text(
        "The cat sat on the mat and looked at the door.\nRain fell on the old stone bridge all night.\n"
    )
    runs = {
        device: trace_run(
            out=tmp_path / device,
            model="tiny-llama",
            contexts=str(docs),
            each_token=True,
            method="direct",
            min_prefix=2,
            top_k=16,
            device=device,
            progress=False,
        )  # fmt: skip
        for device in ("cpu", "cuda")
    }
    _agree(runs["cpu"].scores, runs["cuda"].scores)
