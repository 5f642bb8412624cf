"""Each-token traces: windows, the three methods against float64 references, top-k, and the run's tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neuronmap.errors import NeuronmapError
from neuronmap.trace.events import Window, document_windows, final_norm, score_windows, top_events
from neuronmap.trace.runner import trace_run

TEXT = "The quick brown fox jumps over the lazy dog because it was tired of running all day long."


@pytest.mark.parametrize(
    ("n", "window", "min_prefix"), [(10, None, 3), (10, 10, 1), (300, 256, 8), (1000, 64, 8), (5, 64, 8)]
)
def test_windows_score_every_event_once_with_the_overlap_as_prefix(
    n: int, window: int | None, min_prefix: int
) -> None:
    tokens = list(range(100, 100 + n))
    windows = document_windows(3, tokens, window, min_prefix)
    scored = [p for w in windows for p in range(w.first, w.stop)]
    assert scored == list(range(min_prefix - 1, n - 1))  # each event once, in order
    for w in windows:
        assert w.doc_id == 3 and w.input_ids == tuple(tokens[w.start : w.start + len(w.input_ids)])
        assert window is None or len(w.input_ids) <= window
        assert w.start <= w.first and w.stop + 1 <= w.start + len(
            w.input_ids
        )  # every target inside the window
        if w.start > 0:
            assert w.first - w.start + 1 >= window // 4  # at least the overlap as prefix


def _events(lm) -> list[Window]:
    ids = lm.tokenizer(TEXT)["input_ids"]
    return document_windows(0, ids, None, 4) + document_windows(1, ids[:12], None, 4)


def _fixed_scale_norm(norm: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The final norm written out by hand with its scale detached (the direct method's definition)."""
    if isinstance(norm, torch.nn.LayerNorm):
        centred = x - x.mean(-1, keepdim=True)
        std = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + norm.eps).detach()
        return centred / std * norm.weight + norm.bias
    rms = torch.sqrt(x.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon).detach()
    return x / rms * norm.weight


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_direct_equals_a_per_event_autograd_reference(tiny_models, name: str) -> None:
    lm = tiny_models(name)
    windows, layers = _events(lm), [0, 1]
    got = score_windows(lm, windows, layers, "direct")
    norm = final_norm(lm.model)
    e = 0
    for w in windows:
        for j in w.local():
            ids = torch.tensor([w.input_ids])
            held: dict[str, torch.Tensor] = {}

            def leaf(module, args, held=held):
                held["x"] = args[0].detach().requires_grad_(True)
                return (held["x"],)

            def by_hand(module, args, out, held=held):
                reference = _fixed_scale_norm(module, held["x"])
                assert torch.allclose(reference, out, atol=1e-10)  # the same values, another derivative
                return reference

            acts: dict[int, torch.Tensor] = {}

            def capture(module, args, acts=acts):
                acts[next(la for la in layers if lm.adapter.modules[la] is module)] = args[0].detach()

            hooks = [norm.register_forward_pre_hook(leaf), norm.register_forward_hook(by_hand)]
            hooks += [lm.adapter.modules[la].register_forward_pre_hook(capture) for la in layers]
            try:
                logits = lm.model(input_ids=ids, use_cache=False).logits
            finally:
                for h in hooks:
                    h.remove()
            logp = logits[0, j].log_softmax(-1)[w.input_ids[j + 1]]
            (grad_x,) = torch.autograd.grad(logp, held["x"])
            for slot, la in enumerate(layers):
                want = acts[la][0, j] * (lm.adapter.neuron_weights(la) @ grad_x[0, j])
                torch.testing.assert_close(got.scores[e, slot].double(), want.double(), rtol=1e-6, atol=1e-9)
            assert got.targets[e] == w.input_ids[j + 1]
            torch.testing.assert_close(got.logprob[e].double(), logp.detach().double(), rtol=1e-6, atol=1e-9)
            e += 1
    assert e == len(got.rows)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_attribution_equals_central_differences_of_the_window_loss(tiny_models, name: str) -> None:
    lm = tiny_models(name)
    windows, layers = _events(lm)[:1], [0, 1]
    got = score_windows(lm, windows, layers, "attribution")
    w = windows[0]
    ids = torch.tensor([w.input_ids])
    local = list(w.local())

    def loss(layer: int, position: int, neuron: int, delta: float) -> float:
        def nudge(la: int, x: torch.Tensor) -> torch.Tensor:
            if la != layer:
                return x
            x = x.clone()
            x[0, position, neuron] += delta
            return x

        from neuronmap.models.hooks import NeuronHook

        with torch.no_grad(), NeuronHook(lm.adapter, layers, capture=False, edit=nudge):
            logp = lm.model(input_ids=ids, use_cache=False).logits[0].log_softmax(-1)
        return float(sum(logp[j, w.input_ids[j + 1]] for j in local))

    # Llama's RMS norm computes in float32 even in a float64 model, so its loss carries float32 noise: the
    # largest scores (least drowned by it) and a step of 1e-3 there; GPT-2 is float64 throughout.
    eps, rel = (1e-3, 1e-2) if name == "tiny-llama" else (1e-5, 1e-5)
    acts = score_windows(lm, windows, layers, "activation").scores
    for flat in got.scores.abs().reshape(-1).topk(6).indices.tolist():
        e, slot, neuron = np.unravel_index(flat, got.scores.shape)
        up, down = (loss(layers[slot], local[e], int(neuron), d) for d in (eps, -eps))
        want = float(acts[e, slot, neuron]) * (up - down) / (2 * eps)
        assert got.scores[e, slot, neuron].item() == pytest.approx(want, rel=rel, abs=1e-9)


def test_activation_is_the_input_of_the_output_projection(tiny_models) -> None:
    lm = tiny_models("tiny-llama")
    w = _events(lm)[0]
    got = score_windows(lm, [w], [1], "activation")
    seen = {}
    hook = lm.adapter.modules[1].register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0].detach()))
    try:
        lm.model(input_ids=torch.tensor([w.input_ids]), use_cache=False)
    finally:
        hook.remove()
    torch.testing.assert_close(got.scores[:, 0].double(), seen["x"][0, list(w.local())].double())


def test_top_events_is_a_stable_sort_per_event() -> None:
    rng = np.random.default_rng(1)
    scores = torch.tensor(rng.choice([-2.0, -1.0, 0.5, 1.0, 3.0], size=(5, 3, 7)))
    event, slot, neuron, value = top_events(scores, 4, None)
    for e in range(5):
        flat = scores[e].reshape(-1).numpy()
        order = np.argsort(-np.abs(flat), kind="stable")[:4]
        mine = [s * 7 + n for ev, s, n in zip(event, slot, neuron, strict=True) if ev == e]
        assert mine == list(order)
    _, _, _, kept = top_events(scores, None, 2.0)
    assert sorted(np.abs(kept)) == sorted(x for x in np.abs(scores.numpy()).ravel() if x >= 2.0)


def _documents(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    rows = [
        {"text": TEXT, "source": "a"},
        {"text": "Too short.", "source": "b"},
        {"text": TEXT * 30, "source": "c"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_each_token_run_writes_the_contract(tmp_path: Path) -> None:
    docs = _documents(tmp_path)
    res = trace_run(out=tmp_path / "run", model="tiny-gpt2", contexts=str(docs), each_token=True, method="direct",
                top_k=5, progress=False)  # fmt: skip
    documents = pd.read_parquet(tmp_path / "run" / "documents.parquet")
    events = res.contexts
    assert list(documents.columns[:3]) == ["doc_id", "text", "token_ids"] and list(
        documents["source"]
    ) == list("abc")
    assert {"context_id", "doc_id", "position", "target", "target_ids", "p_target", "source"} <= set(
        events.columns
    )
    assert list(events["context_id"]) == list(range(len(events)))
    for row in events.itertuples():  # target_ids[0] == token_ids[position + 1] (the run directory contract)
        assert row.target_ids[0] == documents.loc[row.doc_id, "token_ids"][row.position + 1]
    long_doc = events[events.doc_id == 2]
    assert len(documents.loc[2, "token_ids"]) > 256  # longer than tiny-gpt2's window: split, not refused
    assert list(long_doc["position"]) == list(range(7, len(documents.loc[2, "token_ids"]) - 1))
    assert res.scores.groupby("context_id").size().eq(5).all()
    assert res.summary["contexts_total"] == len(events)


def test_each_token_refusals(tmp_path: Path) -> None:
    docs = _documents(tmp_path)
    with pytest.raises(NeuronmapError, match="--each-token takes --method direct, attribution, activation"):
        trace_run(
            out=tmp_path / "r", model="tiny-gpt2", contexts=str(docs), each_token=True, method="ablation"
        )
    with pytest.raises(NeuronmapError, match="--each-token keeps every event"):
        trace_run(out=tmp_path / "r", model="tiny-gpt2", contexts=str(docs), each_token=True, keep="known")
    with pytest.raises(NeuronmapError, match="a document has no 'target' or 'subject' field"):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(json.dumps({"text": "a b c", "target": "d"}) + "\n")
        trace_run(out=tmp_path / "r", model="tiny-gpt2", contexts=str(bad), each_token=True, progress=False)
    with pytest.raises(NeuronmapError, match="no document has more than --min-prefix 5000 tokens"):
        trace_run(
            out=tmp_path / "r",
            model="tiny-gpt2",
            contexts=str(docs),
            each_token=True,
            min_prefix=5000,
            progress=False,
        )
    assert not (tmp_path / "r").exists()
