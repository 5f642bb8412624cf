"""``quiet_libraries``: libraries' warnings silenced unless asked for, neuronmap's own shown as one line."""

from __future__ import annotations

import os
import subprocess
import sys

# Run in a new process: the filters and environment it changes are the whole interpreter's.
SCRIPT = """
import os, warnings
import neuronmap.quiet as q
q.quiet_libraries()
warnings.warn_explicit("from a library", UserWarning, "/lib/somelib.py", 1, module="somelib")
warnings.warn_explicit("from neuronmap", UserWarning, q._PACKAGE + "/models/x.py", 2, module="neuronmap.models.x")
print(os.environ["TRANSFORMERS_VERBOSITY"], os.environ["RAY_LOGGER_LEVEL"])
"""
OURS = ("PYTHONWARNINGS", "TRANSFORMERS_VERBOSITY", "RAY_LOGGER_LEVEL")


def _run(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in OURS}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env={**clean, **env}, check=True
    )


def test_libraries_are_quiet_and_neuronmap_speaks_in_one_line() -> None:
    proc = _run()
    assert proc.stderr == "warning: from neuronmap\n"
    assert proc.stdout == "error error\n"


def test_the_user_can_ask_for_the_libraries_warnings() -> None:
    proc = _run(PYTHONWARNINGS="default", TRANSFORMERS_VERBOSITY="info", RAY_LOGGER_LEVEL="info")
    assert "somelib.py:1: UserWarning: from a library" in proc.stderr
    assert "warning: from neuronmap\n" in proc.stderr
    assert proc.stdout == "info info\n"
