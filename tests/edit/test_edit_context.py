"""Context prefixes: ROME's recipe (sampled from the document start) and MEMIT's (start words), as their code
counts lengths and cleans text."""

from __future__ import annotations

import pytest
import torch

from neuronmap.edit.algorithm.context import STARTS, _starts, context_prefixes, sample, template_text
from neuronmap.edit.hparams import RomeHparams
from neuronmap.errors import NeuronmapError


@pytest.fixture(scope="module")
def lm():
    from neuronmap.models.loader import load_model

    return load_model("tiny-gpt2")


def test_lengths_count_the_prompt_as_generate_fast_does(lm):
    """ROME's and MEMIT's ``generate_fast(..., max_out_len=length)`` stop at ``length`` tokens in all."""
    rome = _starts(lm, "rome", [])
    assert rome == [([lm.tokenizer.convert_tokens_to_ids("<|endoftext|>")], [])]
    memit = _starts(lm, "memit", [])
    assert [lm.tokenizer.decode(text) for _, text in memit] == list(STARTS)
    two_tokens = ([], list(lm.tokenizer("Therefore Because")["input_ids"]))
    gen = torch.Generator().manual_seed(0)
    out = sample(lm, [*rome, memit[0], two_tokens], 7, gen)
    assert [len(x) for x in out] == [6, 6, 7 - len(two_tokens[1])]


def test_template_text_cleans_as_each_recipe():
    text = "a {b}\n\nc ﬁ"  # a ligature NFKD splits, a blank line generate_fast joins
    assert template_text(text, "rome") == "a b c fi. "
    assert template_text(text, "memit") == "a  b  c fi. "


def test_prefixes_are_seeded_and_differ_by_recipe(lm):
    hp = RomeHparams(layer=0, context_template_length_params=((4, 3),))
    assert hp.context_templates == "rome"
    first = context_prefixes(lm, hp, cache=False)
    assert first == context_prefixes(lm, hp, cache=False) and first[0] == "" and len(first) == 4
    assert all(p.endswith(". ") for p in first[1:])
    memit = context_prefixes(lm, hp.replace(context_templates="memit"), cache=False)
    assert all(p.startswith(word) for p, word in zip(memit[1:], STARTS, strict=False))
    assert memit != first
    with pytest.raises(NeuronmapError, match="context_templates must be 'rome' or 'memit'"):
        RomeHparams(layer=0, context_templates="easyedit")
