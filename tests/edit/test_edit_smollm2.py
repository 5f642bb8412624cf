"""Integration on the embedded SmolLM2-135M: one causal trace and one edit, kept small."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smol():
    from neuronmap.models.loader import load_model

    return load_model("smollm2-135m")


def test_causal_trace_eiffel_tower(smol):
    from neuronmap.edit.dsets import Fact
    from neuronmap.edit.experiments.causal_trace import TraceSettings, subject_noise_std, trace_fact

    fact = Fact(0, "The {} is located in the city of", "Eiffel Tower", "Paris")
    std = subject_noise_std(smol, ["Eiffel Tower", "Colosseum", "Japan", "Albert Einstein", "Microsoft"])
    last_layer = smol.n_layers - 1
    settings = TraceSettings(kinds=("hidden",), samples=2, noise_std=std, layers=(1, 3, last_layer))
    tr = trace_fact(smol, fact, settings)
    assert tr.known and tr.p_clean > 0.5 and tr.p_corrupted < 0.1 * tr.p_clean
    hidden = tr.table.pivot(index="position", columns="layer", values="effect")
    subject = list(range(*tr.span))
    # The last layer at the last token is the clean run; by then the subject positions no longer matter.
    assert hidden.loc[len(tr.tokens) - 1, last_layer] == pytest.approx(tr.p_clean, rel=1e-4)
    assert hidden.loc[subject, last_layer].max() < 2 * tr.p_corrupted
    # Early layers recover the fact at a subject token (for this fact SmolLM2 keeps it on "iffel").
    assert hidden.loc[subject, [1, 3]].to_numpy().max() > 5 * tr.p_corrupted


def test_rome_eiffel_tower_to_rome(smol, tmp_path, monkeypatch):
    from neuronmap.edit import Request, load_hparams, rome
    from neuronmap.edit.scoring import mean_logprobs

    monkeypatch.setenv(
        "NEURONMAP_CACHE", str(tmp_path)
    )  # statistics and prefixes stay out of the user's cache
    corpus = tmp_path / "c.txt"
    corpus.write_text("Paris is the capital of France.\nRome is the capital of Italy.\n" * 40)
    hp = load_hparams(model="smollm2-135m").replace(
        mom2_corpus=str(corpus), mom2_n_tokens=600, mom2_ridge=0.01, context_template_length_params=((5, 4),)
    )
    request = Request("The {} is located in the city of", "Eiffel Tower", "Rome", "Paris")
    state = {k: v.clone() for k, v in smol.model.state_dict().items()}
    edit = rome(smol, request, hp)
    prompts = [
        request.text,
        "The Eiffel Tower can be found in the city of",
        "The Colosseum is located in the city of",
    ]

    def probs(target):
        return mean_logprobs(smol, prompts, [target] * 3).exp()

    with edit:
        new, true = probs("Rome"), probs("Paris")
    assert new[0] > 0.5 > true[0] and new[1] > true[1]  # efficacy and a paraphrase
    assert probs("Paris")[0] > 0.5  # undone
    assert all(torch.equal(v, state[k]) for k, v in smol.model.state_dict().items())
