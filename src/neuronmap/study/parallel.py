"""The study's edits in several processes (``--workers N``), most of a study's time.

Each worker loads the model by its name, checks that it has the study's weights, and takes the facts not yet done
one at a time from a shared queue (so none idles while another has a long share), editing each into the study's
``parts`` folder as one process would (a fact's edits do not depend on the other
facts', and ``rundir.kept`` writes each fact whole or not at all); the main process advances the progress bar as
the parts appear and then reads them all in order. Workers are started fresh (``spawn``), get the study's
``SweepPlan`` whole (statistics included, so none recomputes them) and share the main process's torch threads
(at least one each); a failed worker stops the others and the study with its message. As with any ``spawn``, a
script that calls the study with workers needs the ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from neuronmap.errors import NeuronmapError
from neuronmap.models.loader import LoadedModel
from neuronmap.progress import Bar
from neuronmap.rundir import kept
from neuronmap.study import editability as ed
from neuronmap.study.facts import StudyFact

POLL_SECONDS = 0.5


@dataclass(frozen=True)
class WorkerModel:
    """How a worker loads the study's model, and the weights it must find."""

    spec: str
    device: str
    dtype: str
    weights_hash: str
    threads: int

    @classmethod
    def of(cls, lm: LoadedModel, workers: int) -> WorkerModel:
        import torch

        dtype = str(lm.dtype).removeprefix("torch.")
        threads = max(1, torch.get_num_threads() // workers)
        return cls(lm.spec, str(lm.device), dtype, lm.weights_hash, threads)


def edit_in_workers(
    lm: LoadedModel, facts: Sequence[StudyFact], plan: ed.SweepPlan, parts: Path, workers: int, bar: Bar
) -> None:
    """Edit the ``facts`` without a part in ``parts`` by ``plan`` in ``workers`` processes (see the module
    docstring)."""
    todo = [f for f in facts if not ed.edits_part(parts, f).is_file()]
    bar.skip((len(facts) - len(todo)) * len(plan.sweep))
    if not todo:
        return
    context = multiprocessing.get_context("spawn")
    tasks, errors = context.Queue(), context.Queue()
    n = min(workers, len(todo))
    for task in [*todo, *[None] * n]:  # a None per worker: nothing left
        tasks.put(task)
    model = WorkerModel.of(lm, workers)
    procs = [
        context.Process(target=_work, args=(model, tasks, plan, parts, errors), daemon=True) for _ in range(n)
    ]
    seen, started = 0, []
    try:
        for p in procs:
            p.start()
            started.append(p)
        while True:
            alive = any(p.is_alive() for p in procs)
            done = sum(ed.edits_part(parts, f).is_file() for f in todo)
            bar.advance((done - seen) * len(plan.sweep))
            seen = done
            if not alive or any(p.exitcode not in (None, 0) for p in procs):
                break
            time.sleep(POLL_SECONDS)
        failed = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
        if failed:
            try:
                message = errors.get(timeout=5)
            except queue.Empty:
                message = f"a worker stopped with exit code {failed[0]}"
            raise NeuronmapError(f"--workers: {message}")
    finally:
        for p in started:
            if p.is_alive():
                p.terminate()
            p.join()


def _work(
    model: WorkerModel,
    tasks: multiprocessing.Queue,
    plan: ed.SweepPlan,
    parts: Path,
    errors: multiprocessing.Queue,
) -> None:
    """A worker: load the model, check its weights, edit the facts it takes from ``tasks`` (until a None) into
    ``parts``; a failure goes to ``errors``."""
    try:
        import torch

        from neuronmap.models.loader import load_model

        torch.set_num_threads(model.threads)
        lm = load_model(model.spec, device=model.device, dtype=model.dtype)
        if lm.weights_hash != model.weights_hash:
            raise NeuronmapError(
                f"the model {model.spec!r} loaded in a worker has other weights than the study's; a model that "
                "cannot be loaded again by its name needs --workers 1"
            )
        while (f := tasks.get()) is not None:
            kept(ed.edits_part(parts, f), partial(ed.edit_fact, lm, f, plan))
    except NeuronmapError as exc:
        errors.put(str(exc))
        raise SystemExit(1) from None
    except BaseException:
        errors.put(traceback.format_exc())
        raise
