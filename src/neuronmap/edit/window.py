"""The edit wing's prompts against the model's window, checked before any model work.

An edit reads its key at the subject and optimises its value at the prompt's end, and an evaluation scores each
prompt whole, so nothing here is cut to fit: a prompt whose longest use (a context prefix, the prompt, its
target; or a generation of ``--gen-length``) would not fit the window is refused with one line naming it.
Token counts add the parts' separate tokenisations, which is at least their joint count.
"""

from __future__ import annotations

from collections.abc import Iterable

from neuronmap.edit.algorithm.request import Request
from neuronmap.edit.hparams import EditHparams
from neuronmap.edit.prompts import opening_ids
from neuronmap.errors import NeuronmapError
from neuronmap.models.loader import LoadedModel
from neuronmap.trace.batch import target_string

PREFIX_SLACK = 4  # a context prefix holds a start word and ". " besides its sampled tokens


def token_count(lm: LoadedModel, text: str, special: bool = True) -> int:
    return len(lm.tokenizer(text, add_special_tokens=special)["input_ids"])


def check_fits(lm: LoadedModel, text: str, extra: int, where: str, what: str) -> int:
    """The tokens of ``text`` plus ``extra``, refused past the window; the message names ``where`` and ``what``."""
    n = token_count(lm, text) + extra
    if lm.window is not None and n > lm.window:
        raise NeuronmapError(f"{where}: {what} is {n} tokens, longer than the model's window of {lm.window}")
    return n


def prefix_tokens(hp: EditHparams) -> int:
    lengths = [length for length, count in hp.context_template_length_params if count > 0]
    return max(lengths) + PREFIX_SLACK if lengths else 0


def check_request(lm: LoadedModel, hp: EditHparams, request: Request, where: str) -> int:
    """The rewrite prompt, after a context prefix, with the new target (and the true one, when known); returns
    the longest of these in tokens."""
    opening = len(opening_ids(lm.tokenizer, hp.document_start)) + prefix_tokens(hp)
    what = "the rewrite prompt with its target and a context prefix"
    targets = [t for t in (request.target_new, request.target_true) if t]
    extras = [opening + token_count(lm, target_string(request.text, t), special=False) for t in targets]
    return max(check_fits(lm, request.text, extra, where, what) for extra in extras)


def check_prompts(
    lm: LoadedModel, hp: EditHparams, prompts: Iterable[str], targets: Iterable[str], where: str, what: str
) -> int:
    """Each of ``prompts`` scored with the longest of ``targets``; returns the longest in tokens (0: none)."""
    opening = len(opening_ids(lm.tokenizer, hp.document_start))
    longest = max((token_count(lm, " " + t, special=False) for t in targets if t), default=0)
    return max((check_fits(lm, prompt, opening + longest, where, what) for prompt in prompts), default=0)
