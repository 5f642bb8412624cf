"""Prompt templates, subject spans by position, and the document opening."""

from __future__ import annotations

import pytest
import torch

from neuronmap.edit.prompts import (
    check_template,
    document_start,
    encode_fact,
    fill,
    opening_ids,
    with_opening,
)
from neuronmap.errors import NeuronmapError


def test_fill_and_span_by_position(fresh):
    lm = fresh("tiny-gpt2")
    text, start, end = fill("{} is in", "Rome", prefix="Rome was built. ")
    assert text == "Rome was built. Rome is in" and text[start:end] == "Rome" and start == 16
    enc = encode_fact(lm.tokenizer, "{} is in", "Rome", "Italy", prefix="Rome was built. ")
    tokens = [lm.tokenizer.decode([i]) for i in enc.input_ids]
    # The second "Rome" (the filled one), not the first occurrence in the prefix.
    assert tokens[enc.subject_last].strip() == "Rome" and enc.subject_span[0] > 0


def test_opening_shifts_positions(fresh):
    lm = fresh("tiny-gpt2")
    eot = document_start(lm.tokenizer)
    assert eot == [lm.tokenizer.convert_tokens_to_ids("<|endoftext|>")]
    assert opening_ids(lm.tokenizer, False) == []
    plain = encode_fact(lm.tokenizer, "The {} is in", "Eiffel Tower", "Paris")
    opened = encode_fact(lm.tokenizer, "The {} is in", "Eiffel Tower", "Paris", opening=eot)
    assert opened == with_opening(plain, eot)
    assert opened.input_ids == tuple(eot) + plain.input_ids and opened.position == plain.position + 1
    assert opened.subject_span == (plain.subject_span[0] + 1, plain.subject_span[1] + 1)


def test_mean_logprobs_with_opening(fresh):
    from neuronmap.edit.scoring import mean_logprobs

    lm = fresh("tiny-llama")
    eot = document_start(lm.tokenizer)
    got = float(mean_logprobs(lm, ["Tokyo is in"], ["Japan"], opening=eot)[0])
    ids = eot + lm.tokenizer("Tokyo is in Japan")["input_ids"]
    with torch.no_grad():
        logp = lm.model(input_ids=torch.tensor([ids])).logits[0].log_softmax(-1)
    target = lm.tokenizer(" Japan")["input_ids"]
    expected = sum(float(logp[len(ids) - len(target) - 1 + j, t]) for j, t in enumerate(target)) / len(target)
    assert got == pytest.approx(expected, rel=1e-9)


def test_tokenizer_with_its_own_bos_needs_no_opening():
    class Bos:
        bos_token_id = 7

        def __call__(self, text, add_special_tokens=True):
            return {"input_ids": [7, 1]}

    assert document_start(Bos()) == []


@pytest.mark.parametrize(
    ("prompt", "subject", "message"),
    [
        ("{} is {}", "Rome", "exactly one"),
        ("Rome is", "Rome", "write '{} is'"),
        ("{}", "Rome", "only the subject"),
    ],
)
def test_template_errors(prompt, subject, message):
    with pytest.raises(NeuronmapError, match=message):
        check_template(prompt, subject)
