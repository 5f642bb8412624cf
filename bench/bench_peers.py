"""neuronmap against the tools researchers use today: same model, same contexts, same device, one process.

- ``attribution`` (activation x gradient at the MLP neurons, the input of ``mlp.c_proj``) against TransformerLens
  (``TransformerBridge``: hooks on ``blocks.L.mlp.hook_post``, then the gradient of the metric with respect to
  the captured activations, multiplied by them) and against nnsight (``model.trace``: ``c_proj.input`` saved, then
  its ``.grad`` inside ``metric.backward()``). Each gets the same batches and the same metric (the target's
  log-probability under teacher forcing, neuronmap's ``target_logprob``); each is used at its best: no weight
  gradients, one forward and one backward per batch. Agreement: Pearson >= 0.999 on the scores. Target:
  neuronmap >= 1.5x faster than each.
- ``integrated-gradients`` against the ``knowledge-neurons`` package (``KnowledgeNeurons.get_scores``, all
  ``steps`` in one batch, ``model_type="gpt2"``). Its GPT-2 path patches the output of ``mlp.c_fc``, the
  pre-activation; it is pointed at ``mlp.act`` (the GELU module, whose output is the input of ``c_proj``) so that
  both score the same neurons; its own code does everything else. By default the two differ by design: it
  integrates the target's probability at ``linspace(0, 1, steps)`` and divides by ``steps``; neuronmap integrates
  the log-probability with the midpoint rule. So neuronmap runs twice: with its defaults (agreement reported, no
  threshold) and with knowledge-neurons' definition (``metric="prob", rule="linspace"``, CLI ``--ig-metric prob
  --ig-rule linspace``: Pearson >= 0.999). Target: >= 3x in both.
- the map stage against the original method: networkx's ``collaboration_weighted_projected_graph`` plus
  python-louvain's ``best_partition`` on the same trace (attribution scores of the contexts, top 100 per context,
  traced by neuronmap): time ratio and modularity of both (neuronmap: the same projection, Leiden).

The model is GPT-2 shaped, built in code with a fixed seed (random weights) and the real GPT-2 tokenizer; contexts
are the built-in facts whose target is one GPT-2 token (knowledge-neurons scores one token). Timings alternate the
tools and take medians; torch runs on one thread unless ``--threads`` says otherwise. Results go to
``bench/results/peers.json``. ``python -m bench.bench_peers [--quick]`` (``make bench-peers``).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from neuronmap.contexts.loaders import load_contexts
from neuronmap.models.loader import LoadedModel, load_model
from neuronmap.trace.batch import Batch, collate, encode, target_logprob, target_string
from neuronmap.trace.methods import attribution, integrated_gradients

HERE = Path(__file__).parent
Row = dict[str, object]
SHAPE = {"n_layer": 6, "n_embd": 256, "n_head": 4}  # n_inner = 4 * n_embd, as knowledge-neurons assumes
ATTRIBUTION_TARGET, IG_TARGET, PEARSON_MIN = 1.5, 3.0, 0.999


def _row(benchmark: str, case: str, value: float, unit: str, target: str = "", ok: bool = True) -> Row:
    return {
        "benchmark": benchmark,
        "case": case,
        "value": round(float(value), 4),
        "unit": unit,
        "target": target,
        "ok": bool(ok),
    }


def build_model(folder: Path, shape: dict[str, int] = SHAPE, seed: int = 0) -> Path:
    """A GPT-2-shaped model with random weights and the real GPT-2 tokenizer, saved to ``folder``."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from neuronmap.models.tiny import gpt2_tokenizer

    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=50257, n_positions=128, initializer_range=0.05, **shape)
    GPT2LMHeadModel(config).save_pretrained(folder)
    gpt2_tokenizer().save_pretrained(folder)
    return folder


def single_token_facts(lm: LoadedModel, limit: int) -> list[tuple[str, str]]:
    """(text, target with its leading space) of built-in facts whose target is one GPT-2 token."""
    out = []
    for c in load_contexts("builtin:facts").contexts:
        target = target_string(c.text, c.target or "")
        if len(lm.tokenizer.encode(target)) == 1:
            out.append((c.text, target))
        if len(out) == limit:
            break
    return out


def batches_of(lm: LoadedModel, facts: list[tuple[str, str]], size: int) -> list[Batch]:
    encoded = [encode(lm.tokenizer, text, target) for text, target in facts]
    pad = lm.tokenizer.pad_token_id
    return [collate(encoded[i : i + size], pad, lm.device) for i in range(0, len(encoded), size)]


def _at_position(values: torch.Tensor, batch: Batch) -> torch.Tensor:
    """(B, T, d) -> (B, d) at each context's prediction position."""
    return values[torch.arange(len(batch)), batch.position]


# ---- the peers, each at its best ----------------------------------------------------------------------------
class TransformerLensAttribution:
    """Activation x gradient with TransformerLens' bridge: forward hooks on ``hook_post`` capture the
    activations, ``torch.autograd.grad`` of the metric gives their gradients (no weight gradients)."""

    def __init__(self, folder: Path, tokenizer, layers: list[int]) -> None:
        from transformer_lens.model_bridge import TransformerBridge

        self.bridge = TransformerBridge.boot_transformers(str(folder), tokenizer=tokenizer, device="cpu")
        self.bridge.eval()
        self.names = [f"blocks.{layer}.mlp.hook_post" for layer in layers]

    def __call__(self, batch: Batch) -> torch.Tensor:
        acts: dict[str, torch.Tensor] = {}

        def keeper(name: str) -> Callable:
            def keep(x: torch.Tensor, hook) -> torch.Tensor:
                acts[name] = x
                return x

            return keep

        with torch.enable_grad(), self.bridge.hooks(fwd_hooks=[(name, keeper(name)) for name in self.names]):
            logits = self.bridge(batch.input_ids, attention_mask=batch.attention_mask)
            captured = [acts[name] for name in self.names]
            grads = torch.autograd.grad(target_logprob(logits, batch).sum(), captured)
        return torch.stack(
            [_at_position(a.detach() * g, batch) for a, g in zip(captured, grads, strict=True)], dim=1
        )


class NnsightAttribution:
    """Activation x gradient with nnsight: ``c_proj.input`` saved, its ``.grad`` read inside
    ``metric.backward()`` (weights frozen, the embeddings' output made to require grad)."""

    def __init__(self, folder: Path, tokenizer, layers: list[int]) -> None:
        from nnsight import LanguageModel
        from transformers import GPT2LMHeadModel

        model = GPT2LMHeadModel.from_pretrained(str(folder), attn_implementation="eager").eval()
        model.requires_grad_(False)
        self.model = LanguageModel(model, tokenizer=tokenizer)
        self.layers = layers

    def __call__(self, batch: Batch) -> torch.Tensor:
        model, out = self.model, {}
        with model.trace(batch.input_ids, attention_mask=batch.attention_mask):
            model.transformer.wte.output.requires_grad_(True)
            acts = [model.transformer.h[layer].mlp.c_proj.input for layer in self.layers]
            out["acts"] = [a.save() for a in acts]
            metric = target_logprob(model.lm_head.output, batch).sum()
            with metric.backward():
                out["grads"] = [a.grad.save() for a in reversed(acts)][::-1]  # backward runs last layer first
        return torch.stack(
            [_at_position(a * g, batch) for a, g in zip(out["acts"], out["grads"], strict=True)], dim=1
        )


class KnowledgeNeuronsIG:
    """``KnowledgeNeurons.get_scores`` on one context at a time (its interface), all steps in one batch."""

    def __init__(self, folder: Path, tokenizer, steps: int) -> None:
        from knowledge_neurons import KnowledgeNeurons
        from transformers import GPT2LMHeadModel

        model = GPT2LMHeadModel.from_pretrained(str(folder), attn_implementation="eager").eval()
        self.kn = KnowledgeNeurons(model, tokenizer, model_type="gpt2", device="cpu")
        self.kn.input_ff_attr = "mlp.act"  # the GELU's output, the input of c_proj: neuronmap's neuron
        self.steps = steps

    def __call__(self, facts: list[tuple[str, str]]) -> torch.Tensor:
        scores = [
            self.kn.get_scores(text, target, batch_size=self.steps, steps=self.steps, pbar=False)
            for text, target in facts
        ]
        return torch.stack(scores)  # (contexts, layers, d)


# ---- timing and agreement -----------------------------------------------------------------------------------
def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def alternating(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds of each function, run in turns after one warm-up each."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            times[name].append(_timed(fn))
    return {name: statistics.median(t) for name, t in times.items()}


def pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    x, y = (t.detach().double().flatten().numpy() for t in (a, b))
    return float(np.corrcoef(x, y)[0, 1])


def bench_attribution(lm: LoadedModel, folder: Path, batches: list[Batch], repeats: int) -> list[Row]:
    layers = list(range(lm.n_layers))
    peers = {
        "TransformerLens": TransformerLensAttribution(folder, lm.tokenizer, layers),
        "nnsight": NnsightAttribution(folder, lm.tokenizer, layers),
    }

    def ours(batch: Batch) -> torch.Tensor:
        return attribution(lm, batch, layers).scores

    reference = torch.cat([ours(b) for b in batches])
    rows = []
    fns = {"neuronmap": lambda: [ours(b) for b in batches]}
    fns |= {name: (lambda p=peer: [p(b) for b in batches]) for name, peer in peers.items()}
    times = alternating(fns, repeats)
    n = sum(len(b) for b in batches)
    rows.append(_row("attribution", "neuronmap contexts/s", n / times["neuronmap"], "contexts/s"))
    for name, peer in peers.items():
        r = pearson(reference, torch.cat([peer(b) for b in batches]))
        ratio = times[name] / times["neuronmap"]
        rows += [
            _row("attribution", f"Pearson vs {name}", r, "", f">= {PEARSON_MIN}", r >= PEARSON_MIN),
            _row(
                "attribution",
                f"speed-up vs {name} ({n} contexts, batches of {len(batches[0])})",
                ratio,
                "x",
                f">= {ATTRIBUTION_TARGET}",
                ratio >= ATTRIBUTION_TARGET,
            ),
        ]
    return rows


def bench_integrated_gradients(
    lm: LoadedModel, folder: Path, facts: list[tuple[str, str]], steps: int, repeats: int
) -> list[Row]:
    layers = list(range(lm.n_layers))
    peer = KnowledgeNeuronsIG(folder, lm.tokenizer, steps)
    batch = batches_of(lm, facts, len(facts))[0]
    configs = {  # name: (metric, rule)
        "neuronmap": ("logprob", "midpoint"),
        "neuronmap, knowledge-neurons' definition": ("prob", "linspace"),
    }

    def ours(metric: str, rule: str) -> torch.Tensor:
        return integrated_gradients(lm, batch, layers, steps=steps, metric=metric, rule=rule).scores

    fns = {name: (lambda c=c: ours(*c)) for name, c in configs.items()}
    times = alternating({**fns, "knowledge-neurons": lambda: peer(facts)}, repeats)
    theirs = peer(facts)
    case = f"{len(facts)} contexts, {steps} steps, {len(layers)} layers"
    rows = []
    for name, (metric, _rule) in configs.items():
        r = pearson(fns[name](), theirs)
        ratio = times["knowledge-neurons"] / times[name]
        same = metric == "prob"
        label = "prob at linspace points, both" if same else "log-prob midpoint vs prob at linspace points"
        rows += [
            _row(
                "integrated-gradients",
                f"Pearson {name} vs knowledge-neurons ({label})",
                r,
                "",
                f">= {PEARSON_MIN}" if same else "",
                r >= PEARSON_MIN if same else True,
            ),
            _row(
                "integrated-gradients",
                f"speed-up {name} vs knowledge-neurons ({case})",
                ratio,
                "x",
                f">= {IG_TARGET}",
                ratio >= IG_TARGET,
            ),
        ]
    return rows


def trace_edges(lm: LoadedModel, batches: list[Batch], facts: list[tuple[str, str]], top: int = 100):
    """The edges table (layer, neuron, token_id, weight) of an attribution trace: each context's top ``top``
    positive scores, summed per (neuron, target token), as ``neuronmap map`` builds it."""
    import pandas as pd

    rows = []
    for batch in batches:
        scores = attribution(lm, batch, list(range(lm.n_layers))).scores  # (B, L, d)
        flat = scores.flatten(1)
        values, index = flat.topk(top, dim=1)
        for b in range(len(batch)):
            keep = values[b] > 0
            idx = index[b][keep].numpy()
            rows.append(
                pd.DataFrame(
                    {
                        "layer": idx // lm.d_mlp,
                        "neuron": idx % lm.d_mlp,
                        "token_id": int(batch.target_ids[b, 0]),
                        "weight": values[b][keep].double().numpy(),
                    }
                )
            )
    edges = pd.concat(rows, ignore_index=True)
    return edges.groupby(["layer", "neuron", "token_id"], as_index=False)["weight"].sum()


def bench_map(edges) -> list[Row]:
    """neuronmap's exact collaboration projection + Leiden vs networkx's projection + python-louvain."""
    from community import community_louvain
    from networkx.algorithms import bipartite

    from bench.bench_graph import networkx_bipartite
    from neuronmap.graph import project
    from neuronmap.graph.communities import Leiden
    from neuronmap.graph.quality import modularity

    start = time.perf_counter()
    graph, neurons = project(edges, "collaboration", neighbors=None)
    labels = Leiden(random_state=0).fit(graph).labels_
    ours_s = time.perf_counter() - start
    ours_q = modularity(graph, labels)

    nodes, bip = networkx_bipartite(edges, neurons)
    start = time.perf_counter()
    reference = bipartite.collaboration_weighted_projected_graph(bip, nodes)
    parts = community_louvain.best_partition(reference, random_state=0)
    original_s = time.perf_counter() - start
    original_q = community_louvain.modularity(parts, reference)
    case = f"{len(neurons):,} neurons, {reference.number_of_edges():,} neuron edges"
    return [
        _row("map", f"speed-up vs networkx + python-louvain ({case})", original_s / ours_s, "x"),
        _row("map", "neuronmap time (projection + Leiden)", ours_s, "s"),
        _row("map", "original time (networkx projection + best_partition)", original_s, "s"),
        _row(
            "map",
            "neuronmap modularity (Leiden)",
            ours_q,
            "",
            ">= original - 0.01",
            ours_q >= original_q - 0.01,
        ),
        _row("map", "original modularity (python-louvain)", original_q, ""),
    ]


PEERS = {
    "transformer_lens": "transformer-lens",
    "nnsight": "nnsight",
    "knowledge_neurons": "knowledge-neurons",
}


def missing_peers() -> list[str]:
    import importlib.util

    return [pip for module, pip in PEERS.items() if importlib.util.find_spec(module) is None]


def run(quick: bool = False) -> list[Row]:
    missing = missing_peers()
    if missing:  # `make bench` runs every bench_*.py; the peers are an optional extra
        print(f"bench_peers skipped: {', '.join(missing)} not installed (pip install -e '.[bench]')")
        return []
    with tempfile.TemporaryDirectory() as tmp:
        folder = build_model(Path(tmp) / "gpt2-bench")
        lm = load_model(str(folder))
        lm.model.set_attn_implementation(
            "eager"
        )  # TransformerLens' bridge forces eager attention: all use it
        facts = single_token_facts(lm, 64)
        batches = batches_of(lm, facts[: 32 if quick else 64], 8)
        rows = bench_attribution(lm, folder, batches, repeats=3 if quick else 5)
        rows += bench_integrated_gradients(lm, folder, facts[: 4 if quick else 8], 20, 3)
        rows += bench_map(trace_edges(lm, batches_of(lm, facts, 16), facts))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer contexts and repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = run(quick=args.quick)
    from bench.__main__ import print_table

    print_table(rows)
    meta = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "model": {"arch": "gpt2", **SHAPE, "vocab": 50257, "weights": "random, seed 0"},
        "quick": args.quick,
    }
    out = HERE / "results" / "peers.json"
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
