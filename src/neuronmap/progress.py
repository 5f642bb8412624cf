"""Progress on stderr: a bar on a terminal; in a log or pipe, a plain line now and then, so that a long job run
under ``nohup`` or a scheduler still says how far it is and when it will end, while short runs stay silent."""

from __future__ import annotations

import contextlib
import datetime
import sys
import time
from collections.abc import Iterable, Iterator, Sized
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import track as rich_track
from rich.text import Text

T = TypeVar("T")


class _Rate(ProgressColumn):
    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        unit = task.fields.get("unit", self.unit)  # a subtask counts in its own unit
        return Text(f"{speed:.2f} {unit}/s" if speed else f"-- {unit}/s", style="progress.data.speed")


LOG_EVERY = 30.0  # seconds between progress lines where stderr is not a terminal


class Bar:
    """What a job sees of its progress: ``advance`` for work done now, ``skip`` for work found done (a resumed
    run), which moves the count but not the rate the remaining time is estimated from."""

    def __init__(self, progress: Progress | None = None, task: TaskID | None = None) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def skip(self, n: int) -> None:
        self.advance(n)

    @contextlib.contextmanager
    def subtask(self, description: str, total: int, unit: str) -> Iterator[Bar]:
        """A second bar under this one while one long step runs (a mass edit of hundreds of facts), removed when
        the step ends; nothing where this bar shows nothing."""
        if self._progress is None or self._task is None:
            yield Bar()
            return
        task = self._progress.add_task(description, total=total, unit=unit)
        try:
            yield Bar(self._progress, task)
        finally:
            self._progress.remove_task(task)


def _clock(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


class _LogBar(Bar):
    """Lines instead of a bar: one every ``LOG_EVERY`` seconds, and a last one at the end if any was written."""

    def __init__(self, description: str, total: int, unit: str) -> None:
        super().__init__()
        self.description, self.total, self.unit = description, total, unit
        self.started = self.last = time.monotonic()
        self.done = self.skipped = 0
        self.lines = 0

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= LOG_EVERY:
            self.last = now
            self.write(now)

    def skip(self, n: int) -> None:
        self.done += n
        self.skipped += n

    @contextlib.contextmanager
    def subtask(self, description: str, total: int, unit: str) -> Iterator[Bar]:
        bar = _LogBar(description, total, unit)
        yield bar
        if bar.lines:
            bar.write(time.monotonic())

    def write(self, now: float) -> None:
        elapsed = now - self.started
        rate = (self.done - self.skipped) / elapsed if elapsed > 0 else 0.0
        left = f"ETA {_clock((self.total - self.done) / rate)}" if rate > 0 else "ETA --"
        share = 100 * self.done / self.total if self.total else 100.0
        print(
            f"{self.description}: {self.done:,}/{self.total:,} {self.unit} ({share:.0f}%), {rate:.2f} "
            f"{self.unit}/s, elapsed {_clock(elapsed)}, {left}",
            file=sys.stderr,
            flush=True,
        )
        self.lines += 1


@contextlib.contextmanager
def progress_bar(description: str, total: int, unit: str = "items", enabled: bool = True) -> Iterator[Bar]:
    """A bar with count, rate (``unit``/s), elapsed and remaining time; ``advance(n)`` moves it. Where stderr is
    not a terminal, a line with the same facts every ``LOG_EVERY`` seconds instead."""
    console = Console(stderr=True)
    if not enabled:
        yield Bar()
        return
    if not console.is_terminal:
        bar = _LogBar(description, total, unit)
        yield bar
        if bar.lines:
            bar.write(time.monotonic())
        return
    columns = [
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        _Rate(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        yield Bar(progress, progress.add_task(description, total=total))


def track(
    items: Iterable[T], description: str, *, total: int | None = None, enabled: bool = True
) -> Iterator[T]:
    """Iterate over ``items``, drawing a transient bar when enabled and stderr is a terminal (log lines as
    ``progress_bar``'s where it is not)."""
    console = Console(stderr=True)
    if enabled and not console.is_terminal:
        count = total if total is not None else len(items) if isinstance(items, Sized) else 0
        with progress_bar(description, count, "items") as bar:
            for item in items:
                yield item
                bar.advance()
        return
    yield from rich_track(
        items,
        description=description,
        total=total,
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )
