"""Progress where stderr is a log: lines with count, rate and remaining time, silent for short jobs."""

from __future__ import annotations

import itertools

import pytest

from neuronmap import progress


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """A clock the test moves by hand: ``now[0]`` is the time ``time.monotonic`` returns."""
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    return now


def test_a_long_job_writes_lines_with_rate_and_eta(clock, capsys) -> None:
    with progress.progress_bar("tracing", total=1000, unit="events") as bar:
        bar.skip(200)  # found done: counts, but is not the rate of this run
        clock[0] += 10
        bar.advance(100)  # 10 s into the run: no line yet
        clock[0] += 30
        bar.advance(300)  # 40 s: 400 events done here, 10 events/s, 400 left
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "tracing: 600/1,000 events (60%), 10.00 events/s, elapsed 0:00:40, ETA 0:00:40"
    assert lines[1] == lines[0]  # the last line, at the end (the clock did not move)
    assert len(lines) == 2


def test_a_short_job_stays_silent(clock, capsys) -> None:
    with progress.progress_bar("tracing", total=10, unit="events") as bar:
        clock[0] += progress.LOG_EVERY - 1
        bar.advance(10)
    assert capsys.readouterr().err == ""


def test_quiet_writes_nothing(clock, capsys) -> None:
    with progress.progress_bar("tracing", total=10, unit="events", enabled=False) as bar:
        clock[0] += 10 * progress.LOG_EVERY
        bar.advance(5)
        bar.skip(5)
    assert capsys.readouterr().err == ""


def test_track_yields_every_item_and_logs(clock, capsys) -> None:
    ticks = itertools.count()

    def items():
        for i in range(4):
            clock[0] = 1000.0 + progress.LOG_EVERY * next(ticks)
            yield i

    assert list(progress.track(items(), "null samples", total=4)) == [0, 1, 2, 3]
    lines = capsys.readouterr().err.splitlines()
    assert lines[-1].startswith("null samples: 4/4 items (100%)")
    assert "ETA 0:00:00" in lines[-1]


def test_a_subtask_logs_its_own_lines_and_unit(clock, capsys) -> None:
    with (
        progress.progress_bar("edit-eval", total=2, unit="edit") as bar,
        bar.subtask("group 1", 4, "step") as sub,
    ):
        clock[0] += progress.LOG_EVERY
        sub.advance(3)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("group 1: 3/4 step (75%)") and len(lines) == 2  # and its last line at the end


def test_a_subtask_is_a_second_task_of_the_terminal_bar_while_it_runs() -> None:
    import io

    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(file=io.StringIO(), force_terminal=True)) as shown:
        bar = progress.Bar(shown, shown.add_task("edit-eval", total=2))
        with bar.subtask("group 1", 4, "step") as sub:
            sub.advance(2)
            (task,) = [t for t in shown.tasks if t.description == "group 1"]
            assert task.completed == 2 and task.total == 4 and task.fields["unit"] == "step"
        assert [t.description for t in shown.tasks] == ["edit-eval"]  # removed when the step ends
    with progress.Bar().subtask("quiet", 4, "step") as sub:  # a bar that shows nothing has a silent subtask
        sub.advance(4)
