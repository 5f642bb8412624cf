"""The one exception type for user mistakes: the CLI prints its message on one line and exits 2."""

from __future__ import annotations


class NeuronmapError(Exception):
    """A problem the user can fix (bad input, unknown model, missing file); never a bug."""
