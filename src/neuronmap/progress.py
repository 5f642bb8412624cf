"""Progress bars on stderr, drawn only on a terminal so that logs and pipes stay clean."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
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
        return Text(
            f"{speed:.2f} {self.unit}/s" if speed else f"-- {self.unit}/s", style="progress.data.speed"
        )


class _Bar:
    def __init__(self, progress: Progress | None, task: int | None) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)


@contextlib.contextmanager
def progress_bar(description: str, total: int, unit: str = "items", enabled: bool = True) -> Iterator[_Bar]:
    """A bar with count, rate (``unit``/s), elapsed and remaining time; ``advance(n)`` moves it."""
    console = Console(stderr=True)
    if not (enabled and console.is_terminal):
        yield _Bar(None, None)
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
        yield _Bar(progress, progress.add_task(description, total=total))


def track(
    items: Iterable[T], description: str, *, total: int | None = None, enabled: bool = True
) -> Iterator[T]:
    """Iterate over ``items``, drawing a transient bar when enabled and stderr is a terminal."""
    console = Console(stderr=True)
    yield from rich_track(
        items,
        description=description,
        total=total,
        console=console,
        transient=True,
        disable=not (enabled and console.is_terminal),
    )
