"""The map stage on Ray: the row blocks of the blocked projection run as Ray tasks.

The driver splits the projection's factor once (:func:`neuronmap.graph.projection.gram_blocks`), puts it in Ray's
object store, and submits one task per range of row blocks (about ``tasks_per_worker`` ranges per worker, so a
slow task does not hold the others back). Each task computes its rows and keeps each row's top neighbours exactly
as the local run does, and returns only the kept pairs; the driver joins them into the symmetric graph. The
projections of the null samples (clusterability) run the same way. Clustering, nulls' shuffling and token tables
stay on the driver.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import numpy as np

from neuronmap.errors import NeuronmapError
from neuronmap.graph.projection import GramBlocks, gram_rows
from neuronmap.raytools import connect, import_ray


class RayBlocks:
    """A :class:`~neuronmap.graph.projection.BlockRunner` on a Ray cluster; use it as a context manager.

    ``address`` None starts a local cluster with ``workers`` CPUs (stopped on exit); otherwise it connects to
    that cluster ('auto' or host:port), whose own resources decide how many tasks run at once.
    """

    def __init__(self, address: str | None = None, workers: int = 2, tasks_per_worker: int = 4) -> None:
        if workers < 1:
            raise NeuronmapError(f"--workers {workers}: must be >= 1")
        self.address, self.workers, self.tasks_per_worker = address, workers, tasks_per_worker
        self._module = import_ray()  # fails here, before any work, when Ray is not installed
        self._ray: Any = None
        self._started_here = False
        self._task: Any = None

    def __enter__(self) -> RayBlocks:
        ray = self._module
        self._started_here = connect(ray, self.address, self.workers)
        self._ray = ray
        self._task = ray.remote(num_cpus=1)(gram_rows)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._started_here and self._ray is not None:
            self._ray.shutdown()
        self._ray = self._task = None

    def parts(self, blocks: GramBlocks) -> int:
        return self.workers * self.tasks_per_worker

    def gram_rows(
        self,
        blocks: GramBlocks,
        ranges: list[tuple[int, int]],
        neighbors: int | None,
        threshold: float | None,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        if self._task is None:
            raise RuntimeError("RayBlocks is used outside its `with` block")
        ref = self._ray.put(blocks)
        futures = [self._task.remote(ref, start, stop, neighbors, threshold) for start, stop in ranges]
        return self._ray.get(futures)
