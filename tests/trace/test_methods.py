"""Each importance method against an independent reference computed with plain torch."""

from __future__ import annotations

import pytest
import torch

from neuronmap.errors import NeuronmapError
from neuronmap.models.hooks import NeuronHook
from neuronmap.trace.batch import collate, encode, target_logprob
from neuronmap.trace.methods import (
    ablation,
    attribution,
    causal,
    corrupted_logprob,
    embedding_noise,
    ig_alphas,
    integrated_gradients,
    noise_generator,
)

CONTEXTS = [
    ("The Eiffel Tower is located in the city of", "Paris", "Eiffel Tower"),
    ("Tokyo is the capital of", "Japan", "Tokyo"),
    ("My favourite colour is", "dark blue", "favourite colour"),
]
ARCHS = ["tiny-gpt2", "tiny-llama", "tiny-neox", "tiny-gemma"]


def make_batch(lm, contexts=CONTEXTS):
    encoded = [encode(lm.tokenizer, text, target, subject) for text, target, subject in contexts]
    return collate(encoded, lm.tokenizer.pad_token_id)


def plain_metric(lm, batch, pre_hook=None):
    """The metric through plain forward-pre-hooks registered here, not through NeuronHook."""
    handles = []
    if pre_hook is not None:
        for layer, module in enumerate(lm.adapter.modules):
            handles.append(module.register_forward_pre_hook(lambda m, a, layer=layer: pre_hook(layer, a)))
    try:
        logits = lm.model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        return target_logprob(logits, batch)
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("name", ARCHS)
@pytest.mark.parametrize("positions", ["target", "all"])
def test_attribution_matches_plain_autograd(tiny_models, name, positions):
    lm = tiny_models(name)
    batch = make_batch(lm)
    layers = list(range(lm.n_layers))
    got = attribution(lm, batch, layers, positions=positions).scores

    # Reference: unfreeze the weights, retain_grad on the captured inputs, backward.
    lm.model.requires_grad_(True)
    captured = {}

    def keep(layer, args):
        args[0].retain_grad()
        captured[layer] = args[0]

    try:
        plain_metric(lm, batch, keep).sum().backward()
    finally:
        lm.model.requires_grad_(False)
        lm.model.zero_grad(set_to_none=True)
    for layer in layers:
        prod = captured[layer] * captured[layer].grad  # (B, T, d)
        for b in range(len(batch)):
            if positions == "target":
                want = prod[b, batch.position[b]]
            else:
                want = prod[b, : int(batch.attention_mask[b].sum())].sum(0)
            torch.testing.assert_close(got[b, layer], want.float(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_ablation_matches_zeroed_weights(tiny_models, name):
    """Zeroing a neuron at every position equals zeroing its output weights (Conv1D rows / Linear columns)."""
    lm = tiny_models(name)
    batch = make_batch(lm)
    got = ablation(lm, batch, [0, 1], positions="all", candidates=10_000).scores
    assert not torch.isnan(got).any()
    with torch.no_grad():
        clean = plain_metric(lm, batch)
        for layer in range(lm.n_layers):
            for neuron in range(0, lm.d_mlp, 7):
                weights = lm.adapter.neuron_weights(layer)
                saved = weights[neuron].clone()
                weights[neuron] = 0
                try:
                    ablated = plain_metric(lm, batch)
                finally:
                    weights[neuron] = saved
                torch.testing.assert_close(
                    got[:, layer, neuron], (clean - ablated).float(), rtol=1e-4, atol=1e-7
                )


def test_ablation_at_prediction_position_matches_hand_loop(tiny_models):
    lm = tiny_models("tiny-llama")
    batch = make_batch(lm)
    got = ablation(lm, batch, [1], positions="target", candidates=10_000).scores
    with torch.no_grad():
        clean = plain_metric(lm, batch)
        for neuron in (0, 5, 63):

            def zero_at_pred(layer, args, neuron=neuron):
                if layer != 1:
                    return None
                x = args[0].clone()
                x[torch.arange(len(batch)), batch.position, neuron] = 0
                return (x,)

            ablated = plain_metric(lm, batch, zero_at_pred)
            torch.testing.assert_close(got[:, 0, neuron], (clean - ablated).float(), rtol=1e-4, atol=1e-7)


def test_ablation_candidates_limit_and_mean_value(tiny_models):
    lm = tiny_models("tiny-gpt2")
    batch = make_batch(lm)
    res = ablation(lm, batch, [0, 1], candidates=10)
    scored = ~torch.isnan(res.scores)
    assert scored.view(len(batch), -1).sum(1).tolist() == [10] * len(batch)
    # The candidates are the 10 largest |attribution| of each context.
    for b in range(len(batch)):
        top = res.attribution[b].view(-1).abs().topk(10).indices
        assert scored[b].view(-1)[top].all()
    means = torch.randn(2, lm.d_mlp, dtype=torch.float64)
    res_mean = ablation(lm, batch, [0, 1], candidates=10_000, mean_acts=means)
    with torch.no_grad():
        clean = plain_metric(lm, batch)

        def to_mean(layer, args):
            if layer != 0:
                return None
            x = args[0].clone()
            x[torch.arange(len(batch)), batch.position, 3] = means[0, 3]
            return (x,)

        want = clean - plain_metric(lm, batch, to_mean)
    torch.testing.assert_close(res_mean.scores[:, 0, 3], want.float(), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama", "tiny-neox"])
def test_integrated_gradients_completeness(tiny_models, name):
    """Per layer, attributions sum to metric(x) - metric(layer scaled to 0 at the prediction position)."""
    lm = tiny_models(name)
    batch = make_batch(lm)
    res = integrated_gradients(lm, batch, [0, 1], steps=64)
    with torch.no_grad():
        clean = plain_metric(lm, batch)
        for layer in range(lm.n_layers):

            def zero_layer(l_, args, layer=layer):
                if l_ != layer:
                    return None
                x = args[0].clone()
                x[torch.arange(len(batch)), batch.position] = 0
                return (x,)

            delta = clean - plain_metric(lm, batch, zero_layer)
            total = res.scores[:, layer].sum(-1).double()
            assert torch.all((total - delta).abs() <= 0.02 * delta.abs() + 1e-9), (total, delta)


def test_integrated_gradients_one_step_is_gradient_at_half(tiny_models):
    """With one step the midpoint rule is a * grad(a/2): check against autograd on a hand-scaled layer."""
    lm = tiny_models("tiny-gpt2")
    batch = make_batch(lm)
    res = integrated_gradients(lm, batch, [1], steps=1)
    lm.model.requires_grad_(True)
    store = {}

    def half(layer, args):
        if layer != 1:
            return None
        x = args[0].detach().clone()
        store["a"] = x.clone()
        x[torch.arange(len(batch)), batch.position] *= 0.5
        x.requires_grad_(True)
        store["x"] = x
        return (x,)

    try:
        plain_metric(lm, batch, half).sum().backward()
    finally:
        lm.model.requires_grad_(False)
        lm.model.zero_grad(set_to_none=True)
    rows = torch.arange(len(batch))
    want = (store["a"] * store["x"].grad)[rows, batch.position]
    torch.testing.assert_close(res.scores[:, 0], want.float(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name", [*ARCHS, "tiny-bert"])
@pytest.mark.parametrize(
    ("positions", "per_position", "metric", "rule"),
    [
        ("target", False, "logprob", "midpoint"),
        ("all", True, "logprob", "midpoint"),
        ("target", False, "prob", "linspace"),
        ("all", False, "prob", "right"),
    ],
)
def test_integrated_gradients_fast_path_equals_straightforward(
    tiny_models, name, positions, per_position, metric, rule
):
    """Replaying the clean blocks below the scaled layer and the per-row output layer change nothing."""
    try:
        lm = tiny_models(name)
    except NeuronmapError as exc:  # tiny-bert's tokenizer is an optional download
        pytest.skip(str(exc))
    batch = make_batch(lm)
    layers = list(range(lm.n_layers))[::-1]  # any order, layer 0 (nothing to replay) included
    kwargs = dict(steps=3, positions=positions, per_position=per_position, metric=metric, rule=rule)
    fast = integrated_gradients(lm, batch, layers, **kwargs)
    plain = integrated_gradients(lm, batch, layers, fast=False, **kwargs)
    torch.testing.assert_close(fast.scores, plain.scores, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(fast.logprob, plain.logprob)
    assert torch.equal(fast.correct, plain.correct)


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_integrated_gradients_one_right_step_is_attribution(tiny_models, name):
    """One right-rule step is the gradient at the clean point: attribution for the log-probability, and
    p(target) x attribution for the probability (d p = p d log p)."""
    lm = tiny_models(name)
    batch = make_batch(lm)
    layers = list(range(lm.n_layers))
    attr = attribution(lm, batch, layers)
    logprob = integrated_gradients(lm, batch, layers, steps=1, rule="right")
    prob = integrated_gradients(lm, batch, layers, steps=1, metric="prob", rule="right")
    torch.testing.assert_close(logprob.scores, attr.scores, rtol=1e-6, atol=1e-9)
    want = attr.scores * attr.logprob.exp().float()[:, None, None]
    torch.testing.assert_close(prob.scores, want, rtol=1e-6, atol=1e-9)


def test_integrated_gradients_rules_and_checks():
    torch.testing.assert_close(ig_alphas(4, "midpoint"), torch.tensor([1, 3, 5, 7], dtype=torch.float64) / 8)
    torch.testing.assert_close(ig_alphas(4, "right"), torch.tensor([1, 2, 3, 4], dtype=torch.float64) / 4)
    torch.testing.assert_close(ig_alphas(4, "linspace"), torch.tensor([0, 1, 2, 3], dtype=torch.float64) / 3)
    with pytest.raises(NeuronmapError, match="integration rule"):
        ig_alphas(4, "trapezoid")


def _plain_corrupted(lm, batch_one, span, noise, patch_mlp_out=None):
    """p(target) with noised subject embeddings via inputs_embeds, optionally patching MLP outputs."""
    emb = lm.adapter.input_embeddings()(batch_one.input_ids).repeat(noise.shape[0], 1, 1)
    emb[:, span[0] : span[1]] += noise
    handles = []
    if patch_mlp_out is not None:
        for layer, module in enumerate(lm.adapter.modules):
            handles.append(module.register_forward_hook(lambda m, a, o, layer=layer: patch_mlp_out[layer]))
    try:
        rows = batch_one.repeat(noise.shape[0])
        logits = lm.model(inputs_embeds=emb, attention_mask=rows.attention_mask).logits
        return target_logprob(logits, rows).exp().mean()
    finally:
        for h in handles:
            h.remove()


@pytest.mark.parametrize("name", ["tiny-gpt2", "tiny-llama"])
def test_causal_against_plain_corruption(tiny_models, name):
    lm = tiny_models(name)
    batch = make_batch(lm, CONTEXTS[:1])
    span = batch.encoded[0].subject_span
    res = causal(lm, batch, [0, 1], keys=["0"], samples=4, candidates=10_000, seed=3)
    noise = embedding_noise(lm, span[1] - span[0], 4, 3.0, noise_generator(3, "0"))
    rows = batch.repeat(4)
    with torch.no_grad():
        p_corrupt = _plain_corrupted(lm, batch, span, noise)
        # No restoration: the corrupted probability, computed independently through inputs_embeds.
        torch.testing.assert_close(res.extra["p_corrupted"][0], p_corrupt)

        # Restoring every neuron of every layer at every position equals patching in the clean MLP outputs.
        outs, handles = {}, []
        for layer, module in enumerate(lm.adapter.modules):
            handles.append(
                module.register_forward_hook(lambda m, a, o, layer=layer: outs.__setitem__(layer, o))
            )
        with NeuronHook(lm.adapter) as hook:
            clean_p = plain_metric(lm, batch).exp()
        for h in handles:
            h.remove()
        clean_acts = hook.acts

        def restore_everything(layer, x):
            return clean_acts[layer].expand_as(x).contiguous()

        p_all = corrupted_logprob(lm, rows, span, noise, restore_everything, [0, 1]).exp().mean()
        want = _plain_corrupted(lm, batch, span, noise, {k: v.expand(4, -1, -1) for k, v in outs.items()})
        torch.testing.assert_close(p_all, want)
        # Not the clean probability: attention still reads the noised subject embeddings.
        assert not torch.isclose(p_all, clean_p[0])

        # One neuron restored at the last subject token: its score is the probability it recovers.
        layer, neuron, last = 1, 17, span[1] - 1

        def one(layer_, x):
            if layer_ != layer:
                return x
            x = x.clone()
            x[:, last, neuron] = clean_acts[layer][0, last, neuron]
            return x

        p_one = corrupted_logprob(lm, rows, span, noise, one, [0, 1]).exp().mean()
    torch.testing.assert_close(
        res.scores[0, layer, neuron], (p_one - p_corrupt).float(), rtol=1e-4, atol=1e-7
    )


def test_causal_without_noise_scores_zero(tiny_models):
    lm = tiny_models("tiny-gpt2")
    batch = make_batch(lm, CONTEXTS[:2])
    res = causal(lm, batch, [0, 1], keys=["a", "b"], samples=2, noise=0.0, candidates=50)
    scored = res.scores[~torch.isnan(res.scores)]
    assert scored.numel() == 2 * 50
    torch.testing.assert_close(scored, torch.zeros_like(scored), atol=1e-6, rtol=0)
    torch.testing.assert_close(res.extra["p_corrupted"], res.logprob.exp())
