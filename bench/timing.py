"""Run a command as a child process and read what the kernel measured of it alone (``os.wait4``)."""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def run_timed(
    command: Sequence[str], cwd: Path | None = None, preexec: Callable[[], None] | None = None
) -> tuple[float, resource.struct_rusage]:
    """Wall seconds and the child's resource usage (CPU times, peak RSS, with its own children); a failed
    command stops the benchmark, naming it."""
    start = time.perf_counter()
    proc = subprocess.Popen(list(command), cwd=cwd, preexec_fn=preexec)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(command)}")
    return time.perf_counter() - start, usage
