"""The Ray backend of the trace stage: parts scored by Ray actors, each loading the model once.

Work is divided by part (``--part-size`` contexts, the unit of resumption): the driver keeps one part in flight per
actor and hands the next to whichever finishes first. Actors return the part's tables to the driver, which writes
them into the run directory, so workers need no shared storage and resumption works as with the local backend.
A part is scored by the same code as locally, so results equal the local backend's (up to the last float bits
that thread counts and devices may change).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from neuronmap.errors import NeuronmapError

if TYPE_CHECKING:
    import pandas as pd

    from neuronmap.trace.runner import Part, PartJob

CONNECT_TIMEOUT = 5.0  # seconds to open a TCP connection to a given head before saying it is not there


class _Worker:
    """One Ray actor: the model is loaded in ``__init__`` and kept for every part it scores."""

    def __init__(self, job: PartJob, threads: int) -> None:
        import torch

        from neuronmap.models.loader import load_model

        torch.set_num_threads(threads)
        self.job = job
        self.lm = load_model(job.config.model, device=job.config.device, dtype=job.config.dtype)

    def score(self, part: Part) -> tuple[Part, pd.DataFrame, pd.DataFrame]:
        return self.job.score(self.lm, part)


def import_ray() -> Any:
    """The ray module, or a clear error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise NeuronmapError(
            "--backend ray needs Ray: pip install 'neuronmap[ray]' (or pip install ray)"
        ) from None
    return ray


def unreachable(address: str, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why a TCP connection to ``address``'s host:port does not open within ``timeout`` seconds; None when it
    does or when the address names no port (``auto``). ``ray.init`` itself retries an absent head for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return str(exc) or type(exc).__name__


def connect(ray: Any, address: str | None, workers: int) -> bool:
    """Start or reach a cluster unless Ray is already up; True when this call started it (so stops it)."""
    if ray.is_initialized():
        return False
    reason = unreachable(address) if address else None
    if reason:
        raise NeuronmapError(f"could not reach Ray at {address}: {reason} (is a head node running there?)")
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
            # A local cluster gets exactly the workers' CPUs; a remote one has its own resources.
            **({} if address else {"num_cpus": workers}),
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise NeuronmapError(
            f"could not start or reach Ray at {address or 'a local cluster'}: {exc}"
        ) from exc
    return True


def score_parts_on_ray(job: PartJob, parts: list[Part]) -> Iterator[tuple[Part, pd.DataFrame, pd.DataFrame]]:
    """Yield each part's tables as its actor finishes it (not in part order)."""
    if not parts:
        return
    ray = import_ray()
    config = job.config
    started_here = connect(ray, config.address, config.workers)
    threads = config.threads or max(1, (os.cpu_count() or 1) // config.workers)
    actor = ray.remote(num_cpus=1, num_gpus=config.gpus_per_worker)(_Worker)
    actors = [actor.remote(job, threads) for _ in range(min(config.workers, len(parts)))]
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
