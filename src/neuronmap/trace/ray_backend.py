"""The Ray backend of the trace stage: parts scored by Ray actors, each loading the model once.

Work is divided by part (``--part-size`` contexts, the unit of resumption): the driver keeps one part in flight per
actor and hands the next to whichever finishes first. Actors return the part's tables to the driver, which writes
them into the run directory, so workers need no shared storage and resumption works as with the local backend.
A part is scored by the same code as locally, so results equal the local backend's (up to the last float bits
that thread counts and devices may change).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from neuronmap.raytools import connect, import_ray

if TYPE_CHECKING:
    from neuronmap.models.loader import LoadedModel

P = TypeVar("P", contravariant=True)
R = TypeVar("R", covariant=True)


class PartScorer(Protocol[P, R]):
    """What every actor receives once (picklable): it loads the model and scores parts with it (``runner.PartJob``)."""

    def load(self) -> LoadedModel: ...

    def score(self, lm: LoadedModel, part: P) -> R: ...


class _Worker:
    """One Ray actor: the model is loaded in ``__init__`` and kept for every part it scores."""

    def __init__(self, job: PartScorer[Any, Any], threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.job = job
        self.lm = job.load()

    def score(self, part: Any) -> Any:
        return self.job.score(self.lm, part)


def score_parts_on_ray(
    job: PartScorer[P, R],
    parts: list[P],
    *,
    address: str | None,
    workers: int,
    threads: int,
    gpus_per_worker: float,
) -> Iterator[R]:
    """Yield each part's result as its actor finishes it (not in part order)."""
    if not parts:
        return
    ray = import_ray()
    started_here = connect(ray, address, workers)
    actor = ray.remote(num_cpus=1, num_gpus=gpus_per_worker)(_Worker)
    actors = [actor.remote(job, threads) for _ in range(min(workers, len(parts)))]
    queue = list(parts)
    pending: dict[Any, Any] = {}
    try:
        for a in actors:
            if queue:
                pending[a.score.remote(queue.pop(0))] = a
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            a = pending.pop(done[0])
            result = ray.get(done[0])
            if queue:
                pending[a.score.remote(queue.pop(0))] = a
            yield result
    finally:
        for a in actors:
            ray.kill(a)
        if started_here:
            ray.shutdown()
