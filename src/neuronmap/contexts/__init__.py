"""Contexts: the prompts neurons are traced on, from user files or built-in sets.

Pure data: nothing here imports torch or transformers, so torch-free stages can read contexts too.
"""

from neuronmap.contexts.loaders import ContextSet, load_contexts
from neuronmap.contexts.record import Context

__all__ = ["Context", "ContextSet", "load_contexts"]
