"""Keep the command line's stderr to neuronmap's own lines: libraries print there on their own.

torch, transformers and their dependencies raise Python warnings and log through ``logging``; Ray logs three
lines when it starts a local cluster (a token-authentication warning among them). On a failing command they would
surround the one ``error: ...`` line, on a working one bury its progress. ``quiet_libraries`` (the first thing
``neuronmap.cli.main`` does, before any of them is imported) silences them. Whoever wants them back sets
``PYTHONWARNINGS`` (or ``python -W``), ``TRANSFORMERS_VERBOSITY`` and ``RAY_LOGGER_LEVEL``, e.g.
``PYTHONWARNINGS=default TRANSFORMERS_VERBOSITY=warning RAY_LOGGER_LEVEL=info neuronmap ...``. neuronmap's own
warnings always show, as one ``warning: ...`` line.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

_PACKAGE = str(Path(__file__).parent)
# Read by the libraries when they are imported; a value the user set wins.
_ENV = {"TRANSFORMERS_VERBOSITY": "error", "RAY_LOGGER_LEVEL": "error"}
_library_format = warnings.formatwarning


def quiet_libraries() -> None:
    """Silence the libraries' warnings and logging unless the user asked for them (see the module's text)."""
    for name, value in _ENV.items():
        os.environ.setdefault(name, value)
    if not sys.warnoptions:
        warnings.simplefilter("ignore")
        warnings.filterwarnings("default", module=r"neuronmap(\.|$)")
    warnings.formatwarning = _format


def _format(
    message: Warning | str, category: type[Warning], filename: str, lineno: int, line: str | None = None
) -> str:
    """One line for neuronmap's own warnings; the usual two (place, then source line) for a library's."""
    if filename.startswith(_PACKAGE):
        return f"warning: {message}\n"
    return _library_format(message, category, filename, lineno, line)
