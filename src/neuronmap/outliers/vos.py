"""Virtual Outlier Synthesis (Du et al., ICLR 2022) for an MLP head on text embeddings.

During training, a per-class queue keeps the most recent penultimate features. Once every queue is full and
the epoch reaches ``start_epoch``, each step fits a class-conditional Gaussian with a shared covariance to the
queues, draws ``sample_from`` candidates per class, keeps the ``select`` of lowest likelihood (points at the
edge of the class, the dissimilarity knob), and passes them through the final layer. An uncertainty loss then
teaches a one-weight logistic on the negative energy to call real training features in-distribution and the
virtual outliers out-of-distribution, which pushes the classifier to give low energy (confidence) only near the
data. The cross-entropy and ``loss_weight`` x the uncertainty loss are minimised together.

Differences from the paper's code, on purpose: the logistic's weight is kept positive (``logistic_sign``
"positive"; "free" is the paper's), the logistic acts on the plain energy (no learned per-class
energy weights), and a class's queue holds at most as many features as the class has training texts, so that
small classes fill their queue within an epoch instead of holding stale duplicates.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from neuronmap.errors import NeuronmapError
from neuronmap.outliers.classifier import MLPHead
from neuronmap.outliers.generative import GENERATIVE, make_generative

LOGISTIC_SIGNS = ("positive", "free")


def energy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Free energy ``-T logsumexp(f / T)``: low for inputs the classifier is confident about."""
    return -temperature * torch.logsumexp(logits / temperature, dim=-1)


def uncertainty_loss(
    id_logits: torch.Tensor, ood_logits: torch.Tensor, ood_layer: nn.Linear, sign: str = "positive"
) -> torch.Tensor:
    """Binary cross-entropy of ``sigmoid(w * (-energy) + b)`` with real features = 1, virtual outliers = 0.

    As the paper's code (one linear unit on the scalar ``-energy``, one mean over the real and virtual rows
    together) but for the sign: by default (``sign="positive"``) ``w = softplus(ood_layer.weight)`` is kept
    positive, so that training asks for what the test-time score assumes, "higher -energy = in-distribution".
    ``sign="free"`` is the paper's plain linear unit, ``w = ood_layer.weight`` of either sign: seeds whose
    ``w`` turned negative learned the opposite rule (the README's outlier results measure both).
    """
    if sign not in LOGISTIC_SIGNS:
        raise NeuronmapError(f"unknown logistic sign {sign!r} ({', '.join(LOGISTIC_SIGNS)})")
    scores = torch.cat([-energy(id_logits), -energy(ood_logits)])
    weight = F.softplus(ood_layer.weight) if sign == "positive" else ood_layer.weight
    z = weight.squeeze() * scores + ood_layer.bias
    target = torch.cat([torch.ones(len(id_logits)), torch.zeros(len(ood_logits))]).to(z)
    return F.binary_cross_entropy_with_logits(z, target)


class FeatureQueue:
    """A first-in first-out buffer of detached features per class, with its own capacity per class."""

    def __init__(self, capacities: list[int], dim: int) -> None:
        self.capacities = list(capacities)
        self._buffers = [np.zeros((c, dim), dtype=np.float32) for c in capacities]
        self._counts = [0] * len(capacities)
        self._next = [0] * len(capacities)

    @property
    def full(self) -> bool:
        return all(n == c for n, c in zip(self._counts, self.capacities, strict=True))

    def push(self, features: np.ndarray, labels: np.ndarray) -> None:
        for x, k in zip(features, labels, strict=True):
            cap = self.capacities[k]
            self._buffers[k][self._next[k]] = x
            self._next[k] = (self._next[k] + 1) % cap
            self._counts[k] = min(self._counts[k] + 1, cap)

    def contents(self) -> tuple[np.ndarray, np.ndarray]:
        feats = [b[:n] for b, n in zip(self._buffers, self._counts, strict=True)]
        labels = [np.full(n, k) for k, n in enumerate(self._counts)]
        return np.concatenate(feats), np.concatenate(labels)


class VirtualOutlierSynthesizer:
    """Fit class-conditional densities to features, then draw low-likelihood virtual outliers per class."""

    def __init__(
        self,
        generative: str = "shared",
        sample_from: int = 10_000,
        select: int = 1,
        reg_covar: float = 1e-4,
        n_components: int = 3,
        random_state: int | None = None,
    ) -> None:
        self.generative = generative
        self.sample_from = sample_from
        self.select = select
        self.reg_covar = reg_covar
        self.n_components = n_components
        self.random_state = random_state

    def fit(self, features: np.ndarray, labels: np.ndarray) -> VirtualOutlierSynthesizer:
        self.model_ = make_generative(
            self.generative,
            reg_covar=self.reg_covar,
            n_components=self.n_components,
            random_state=self.random_state,
        ).fit(features, labels)
        self.classes_ = self.model_.classes_
        self._rng = np.random.default_rng(self.random_state)
        return self

    def sample(
        self, random_state: int | np.random.Generator | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``select`` virtual outliers per class: features, their class labels and log-likelihoods."""
        rng = self._rng if random_state is None else np.random.default_rng(random_state)
        xs, ys, lls = [], [], []
        for label in self.classes_:
            x, ll = self.model_.sample_lowest(self.select, self.sample_from, label, rng)
            xs.append(x)
            ys.append(np.full(len(x), label))
            lls.append(ll)
        return np.concatenate(xs), np.concatenate(ys), np.concatenate(lls)


@dataclass
class TrainConfig:
    """Hyper-parameters of the head and of VOS (defaults follow the paper where they transfer)."""

    hidden: int = 128
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    dropout: float = 0.1
    seed: int = 0
    vos: bool = False
    queue: int = 1000
    sample_from: int = 10_000
    select: int = 1
    loss_weight: float = 0.1
    start_epoch: int = 10
    generative: str = "shared"
    components: int = 3
    reg_covar: float = 1e-4
    logistic_sign: str = "positive"

    def check(self) -> None:
        positive = ("hidden", "epochs", "batch_size", "queue", "sample_from", "select", "components")
        for name in positive:
            if getattr(self, name) < 1:
                raise NeuronmapError(
                    f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}"
                )
        if self.select > self.sample_from:
            raise NeuronmapError(f"--select ({self.select}) cannot exceed --sample-from ({self.sample_from})")
        if not 0 <= self.dropout < 1:
            raise NeuronmapError(f"--dropout must be in [0, 1), got {self.dropout}")
        if self.lr <= 0 or self.loss_weight < 0 or self.weight_decay < 0 or self.start_epoch < 0:
            raise NeuronmapError("--lr must be > 0; --loss-weight, --weight-decay and --start-epoch >= 0")
        if self.generative not in GENERATIVE:
            raise NeuronmapError(f"unknown generative model '{self.generative}' ({', '.join(GENERATIVE)})")
        if self.logistic_sign not in LOGISTIC_SIGNS:
            raise NeuronmapError(
                f"--logistic-sign must be one of {', '.join(LOGISTIC_SIGNS)}, got {self.logistic_sign!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_head(
    X: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    config: TrainConfig,
    *,
    progress: bool = False,
) -> tuple[MLPHead, list[dict[str, float]]]:
    """Train a head on embeddings ``X`` and class indices ``y``; with ``config.vos``, the VOS loss too.

    Deterministic for a seed on the CPU: weights, batch order and virtual outliers all come from it.
    Returns the head (eval mode) and one history row per epoch.
    """
    config.check()
    with single_threaded():
        return _fit_head(X, y, n_classes, config, progress)


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run torch and BLAS on one thread: the head and the per-step covariances are small, so extra threads
    only spin and wait (50x slower than one thread on a busy 2-core machine). Restored on exit."""
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(before)


def _fit_head(
    X: np.ndarray, y: np.ndarray, n_classes: int, config: TrainConfig, progress: bool
) -> tuple[MLPHead, list[dict[str, float]]]:
    from neuronmap.progress import progress_bar

    y = np.asarray(y, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes)
    if (counts == 0).any():
        raise NeuronmapError(f"class index {int(np.flatnonzero(counts == 0)[0])} has no training texts")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    order = torch.Generator().manual_seed(config.seed)
    Xt = torch.as_tensor(np.asarray(X, dtype=np.float32))
    yt = torch.as_tensor(y)
    head = MLPHead(Xt.shape[1], config.hidden, n_classes, config.dropout)
    head.set_standardisation(Xt)
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    queue = FeatureQueue([int(min(config.queue, c)) for c in counts], config.hidden)
    history: list[dict[str, float]] = []
    steps = -(-len(Xt) // config.batch_size)
    with progress_bar("training", total=config.epochs * steps, unit="steps", enabled=progress) as bar:
        for epoch in range(config.epochs):
            head.train()
            totals = {"ce": 0.0, "vos": 0.0, "virtual": 0.0}
            vos_steps = 0
            for batch in torch.randperm(len(Xt), generator=order).split(config.batch_size):
                xb, yb = Xt[batch], yt[batch]
                feats = head.features(xb)
                logits = head.final(feats)
                ce = F.cross_entropy(logits, yb)
                loss = ce
                queue.push(feats.detach().numpy(), yb.numpy())
                if config.vos and epoch >= config.start_epoch and queue.full:
                    synth = VirtualOutlierSynthesizer(
                        config.generative,
                        config.sample_from,
                        config.select,
                        config.reg_covar,
                        config.components,
                        random_state=config.seed,
                    ).fit(*queue.contents())
                    virtual, _, _ = synth.sample(rng)
                    ood_logits = head.final(torch.as_tensor(virtual, dtype=torch.float32))
                    lu = uncertainty_loss(logits, ood_logits, head.ood, config.logistic_sign)
                    loss = ce + config.loss_weight * lu
                    totals["vos"] += lu.item()
                    totals["virtual"] += len(virtual)
                    vos_steps += 1
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                totals["ce"] += ce.item() * len(batch)
                bar.advance()
            history.append(
                {
                    "epoch": epoch,
                    "ce": totals["ce"] / len(Xt),
                    "vos_loss": totals["vos"] / vos_steps if vos_steps else float("nan"),
                    "virtual_outliers": totals["virtual"],
                }
            )
    head.eval()
    return head, history
