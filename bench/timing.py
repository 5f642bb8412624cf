"""Run a command as a child process and read what the kernel measured of it alone (``os.wait4``)."""

from __future__ import annotations

import contextlib
import os
import resource
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def lower_priority(nice: int) -> None:
    """Nice this process; with the kernel's autogroups, niceness only ranks processes of one session, so the
    session's group is niced too where the kernel allows it."""
    os.nice(nice)
    with contextlib.suppress(OSError):
        Path("/proc/self/autogroup").write_text(str(nice))


def run_timed(
    command: Sequence[str], cwd: Path | None = None, nice: int = 0
) -> tuple[float, resource.struct_rusage]:
    """Wall seconds and the child's resource usage (CPU times, peak RSS, with its own children), the child run at
    niceness ``nice`` (see ``lower_priority``); a failed command stops the benchmark, naming it."""
    start = time.perf_counter()
    preexec = (lambda: lower_priority(nice)) if nice else None
    proc = subprocess.Popen(list(command), cwd=cwd, preexec_fn=preexec)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return time.perf_counter() - start, usage
