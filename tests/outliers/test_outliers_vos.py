"""The VOS energy and uncertainty loss against hand computations, the feature queue, and seeded training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuronmap.errors import NeuronmapError
from neuronmap.outliers.vos import FeatureQueue, TrainConfig, energy, fit_head, uncertainty_loss


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def test_energy_by_hand():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    expected = [-math.log(math.e + math.e**2 + math.e**3), -math.log(3.0)]
    np.testing.assert_allclose(energy(logits).numpy(), expected, rtol=1e-12)
    # with a temperature: -T log sum exp(f / T)
    np.testing.assert_allclose(
        energy(logits, 2.0)[0].item(), -2 * math.log(sum(math.exp(v / 2) for v in (1, 2, 3)))
    )


def test_uncertainty_loss_and_gradient_by_hand():
    id_rows = [[2.0, -1.0, 0.5], [0.3, 0.1, -0.2]]
    ood_rows = [[-1.0, -0.5, -2.0]]
    raw, b = -0.4, -0.3
    w = math.log1p(math.exp(raw))  # softplus keeps the weight positive
    id_logits = torch.tensor(id_rows, dtype=torch.float64, requires_grad=True)
    ood_logits = torch.tensor(ood_rows, dtype=torch.float64, requires_grad=True)
    layer = torch.nn.Linear(1, 1).double()
    with torch.no_grad():
        layer.weight.fill_(raw)
        layer.bias.fill_(b)
    loss = uncertainty_loss(id_logits, ood_logits, layer)
    loss.backward()

    # By hand: s = logsumexp(f) = -energy, z = w s + b; real rows have target 1 (loss -log sigmoid(z)),
    # virtual rows target 0 (loss -log(1 - sigmoid(z))); mean over the 3 rows.
    # d loss / d f_k = (sigmoid(z) - target) * w * softmax(f)_k / 3; d w / d raw = sigmoid(raw).
    n = 3
    total = 0.0
    grads = []
    grad_w = grad_b = 0.0
    for row, target in [(r, 1.0) for r in id_rows] + [(r, 0.0) for r in ood_rows]:
        s = math.log(sum(math.exp(v) for v in row))
        z = w * s + b
        p = _sigmoid(z)
        total += -(target * math.log(p) + (1 - target) * math.log(1 - p))
        softmax = [math.exp(v - s) for v in row]
        grads.append([(p - target) * w * q / n for q in softmax])
        grad_w += (p - target) * s / n
        grad_b += (p - target) / n
    assert loss.item() == pytest.approx(total / n, rel=1e-12)
    np.testing.assert_allclose(id_logits.grad.numpy(), grads[:2], rtol=1e-10)
    np.testing.assert_allclose(ood_logits.grad.numpy(), grads[2:], rtol=1e-10)
    assert layer.weight.grad.item() == pytest.approx(grad_w * _sigmoid(raw), rel=1e-10)
    assert layer.bias.grad.item() == pytest.approx(grad_b, rel=1e-10)


def test_queue_keeps_the_latest_features_per_class():
    queue = FeatureQueue([2, 3], dim=1)
    queue.push(np.array([[1.0], [2.0], [3.0]]), np.array([0, 0, 0]))
    assert not queue.full
    queue.push(np.array([[10.0], [11.0], [12.0], [13.0]]), np.array([1, 1, 1, 1]))
    assert queue.full
    feats, labels = queue.contents()
    assert sorted(feats[labels == 0].ravel()) == [2.0, 3.0]
    assert sorted(feats[labels == 1].ravel()) == [11.0, 12.0, 13.0]


def _blobs(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 8)) * 3
    y = np.repeat(np.arange(3), 40)
    return (centres[y] + rng.normal(size=(120, 8))).astype(np.float32), y


def test_training_is_deterministic_with_a_seed_and_learns():
    X, y = _blobs()
    config = TrainConfig(
        hidden=16, epochs=12, batch_size=32, lr=0.01, vos=True, start_epoch=4, sample_from=500, seed=3
    )
    a, history = fit_head(X, y, 3, config)
    b, _ = fit_head(X, y, 3, config)
    for (name, ta), tb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(ta, tb), name
    c, _ = fit_head(X, y, 3, TrainConfig(**{**config.to_dict(), "seed": 4}))
    assert not torch.equal(a.final.weight, c.final.weight)
    with torch.no_grad():
        assert (a(torch.as_tensor(X)).argmax(1).numpy() == y).mean() > 0.9
    # virtual outliers appear from the start epoch on (queues of 40 per class fill in the first epoch)
    assert [h["virtual_outliers"] > 0 for h in history] == [False] * 4 + [True] * 8
    assert np.isnan(history[0]["vos_loss"]) and np.isfinite(history[-1]["vos_loss"])


def test_vos_loss_is_minimised():
    X, y = _blobs(1)
    config = TrainConfig(
        hidden=16,
        epochs=30,
        batch_size=40,
        lr=0.01,
        vos=True,
        start_epoch=2,
        loss_weight=1.0,
        sample_from=2000,
    )
    _, history = fit_head(X, y, 3, config)
    assert history[-1]["vos_loss"] < 0.5 * history[2]["vos_loss"]


@pytest.mark.parametrize("generative", ["class", "gmm"])
def test_vos_runs_with_the_other_generative_models(generative):
    X, y = _blobs(2)
    config = TrainConfig(hidden=8, epochs=3, batch_size=60, vos=True, start_epoch=1, sample_from=200, select=2,
                         generative=generative, components=2)  # fmt: skip
    _, history = fit_head(X, y, 3, config)
    assert history[-1]["virtual_outliers"] == 2 * 3 * 2  # select x classes x steps
    assert np.isfinite(history[-1]["vos_loss"])


def test_bad_configs_are_user_errors():
    X, y = _blobs()
    with pytest.raises(NeuronmapError, match="--select"):
        fit_head(X, y, 3, TrainConfig(select=20, sample_from=10))
    with pytest.raises(NeuronmapError, match="unknown generative model"):
        fit_head(X, y, 3, TrainConfig(generative="flow"))
    with pytest.raises(NeuronmapError, match="no training texts"):
        fit_head(X, y, 4, TrainConfig(epochs=1))


def test_free_sign_is_the_papers_plain_linear_logistic():
    """``sign="free"``: ``z = w s + b`` with the layer's own weight, negative allowed: the paper's linear unit on
    ``-energy``, i.e. the layer applied to the column of scores; "positive" (the default) is the softplus one."""
    torch.manual_seed(0)
    id_logits = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    ood_logits = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    layer = torch.nn.Linear(1, 1).double()
    with torch.no_grad():
        layer.weight.fill_(-0.7)  # a negative weight: kept as it is by "free", softplus'd by "positive"
        layer.bias.fill_(0.2)
    scores = torch.cat([-energy(id_logits), -energy(ood_logits)])
    target = torch.tensor([1.0] * 5 + [0.0] * 2, dtype=torch.float64)
    reference = torch.nn.functional.binary_cross_entropy_with_logits(
        layer(scores[:, None]).squeeze(1), target
    )
    free = uncertainty_loss(id_logits, ood_logits, layer, "free")
    assert free.item() == pytest.approx(reference.item(), rel=1e-12)
    grads = torch.autograd.grad(free, [id_logits, ood_logits, layer.weight, layer.bias])
    expected = torch.autograd.grad(reference, [id_logits, ood_logits, layer.weight, layer.bias])
    for got, want in zip(grads, expected, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-14)
    # by hand for one row: z = -0.7 * logsumexp(f) + 0.2
    s0 = math.log(sum(math.exp(v) for v in id_logits[0].tolist()))
    assert float(-0.7 * s0 + 0.2) == pytest.approx(layer(scores[:1, None]).item(), rel=1e-12)
    positive = uncertainty_loss(id_logits, ood_logits, layer)
    assert positive.item() == uncertainty_loss(id_logits, ood_logits, layer, "positive").item()
    assert positive.item() != pytest.approx(free.item())
    with pytest.raises(NeuronmapError, match="logistic sign"):
        uncertainty_loss(id_logits, ood_logits, layer, "negative")


@pytest.mark.parametrize("sign", ["positive", "free"])
def test_only_the_free_sign_can_learn_the_reverse_rule(sign):
    """Scores where the virtual outliers look *more* in-distribution than the real rows: the free weight turns
    negative and fits them; the positive one cannot (its best is w -> 0, the base rate, loss >= log 2 here)."""
    id_logits = torch.tensor([[0.0, 0.0], [0.1, -0.1]], dtype=torch.float64)  # low -energy
    ood_logits = torch.tensor([[5.0, 0.0], [0.0, 6.0]], dtype=torch.float64)  # high -energy
    layer = torch.nn.Linear(1, 1).double()
    with torch.no_grad():
        layer.weight.fill_(0.5)
        layer.bias.fill_(0.0)
    optimiser = torch.optim.SGD(layer.parameters(), lr=0.5)
    for _ in range(300):
        optimiser.zero_grad()
        loss = uncertainty_loss(id_logits, ood_logits, layer, sign)
        loss.backward()
        optimiser.step()
    if sign == "free":
        assert layer.weight.item() < 0 and loss.item() < 0.1
    else:
        assert loss.item() > math.log(2) - 1e-3  # two of each: the base rate is 1/2


def test_logistic_sign_trains_and_is_checked():
    X, y = _blobs(3)
    common = dict(hidden=8, epochs=4, batch_size=40, vos=True, start_epoch=1, sample_from=200, seed=5)
    default, _ = fit_head(X, y, 3, TrainConfig(**common))
    positive, _ = fit_head(X, y, 3, TrainConfig(**common, logistic_sign="positive"))
    free, history = fit_head(X, y, 3, TrainConfig(**common, logistic_sign="free"))
    for (name, a), b in zip(default.state_dict().items(), positive.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(default.ood.weight, free.ood.weight)
    assert np.isfinite(history[-1]["vos_loss"])
    assert TrainConfig().logistic_sign == "positive"
    assert TrainConfig().to_dict()["logistic_sign"] == "positive"
    with pytest.raises(NeuronmapError, match="--logistic-sign"):
        fit_head(X, y, 3, TrainConfig(logistic_sign="negative"))
