"""CounterFact-style metrics against hand computations, and the evaluation loop leaving weights untouched."""

from __future__ import annotations

import math

import pytest
import torch

from neuronmap.edit.dsets import LITE, load_records
from neuronmap.edit.experiments.evaluate import evaluate, record_metrics, summarise
from neuronmap.edit.experiments.fluency import generate, ngram_entropy
from neuronmap.edit.scoring import mean_logprobs
from neuronmap.trace.batch import collate, encode, forward_logits


def test_mean_logprobs_matches_a_full_forward(fresh):
    lm = fresh("tiny-gpt2")
    prompts, targets = ["The Eiffel Tower is in", "Tokyo is the capital of"], ["New York", "Japan"]
    got = mean_logprobs(lm, prompts, targets, batch_size=1)
    for i, (p, t) in enumerate(zip(prompts, targets, strict=True)):
        enc = encode(lm.tokenizer, p, t)
        batch = collate([enc], lm.tokenizer.pad_token_id)
        with torch.no_grad():
            logp = forward_logits(lm.model, batch)[0].log_softmax(-1)
        expected = sum(float(logp[enc.position + j, tok]) for j, tok in enumerate(enc.target_ids))
        assert float(got[i]) == pytest.approx(expected / len(enc.target_ids), rel=1e-9)


def test_record_metrics_by_hand(fresh):
    lm = fresh("tiny-llama")
    record = load_records(LITE, limit=1)[0]
    m = record_metrics(lm, record)

    def p(prompt, target):
        return math.exp(float(mean_logprobs(lm, [prompt], [target])[0]))

    new, true = record.request.target_new, record.target_true
    assert m["efficacy"] == float(p(record.request.text, new) > p(record.request.text, true))
    para = [p(q, new) - p(q, true) for q in record.paraphrase_prompts]
    assert m["paraphrase"] == pytest.approx(sum(d > 0 for d in para) / len(para))
    assert m["paraphrase_magnitude"] == pytest.approx(sum(para) / len(para))
    neigh = [p(q, true) - p(q, new) for q in record.neighborhood_prompts]
    assert m["neighborhood"] == pytest.approx(sum(d > 0 for d in neigh) / len(neigh))


def test_ngram_entropy_reference():
    assert ngram_entropy("a b c d") == pytest.approx((2 / 3 * math.log2(3) + 4 / 3 * math.log2(2)) / 2)
    assert ngram_entropy("a a a a a a") == 0.0
    assert ngram_entropy("x") == 0.0


def test_generation_is_seeded_and_leaves_the_global_rng(fresh):
    lm = fresh("tiny-llama")
    state = torch.random.get_rng_state()
    a = generate(lm, ["Paris is", "The history of Rome"], gen_length=9, seed=3)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a == generate(lm, ["Paris is", "The history of Rome"], gen_length=9, seed=3)
    assert a[0].startswith("Paris is") and len(a[0]) > len("Paris is")


def test_generations_have_gen_length_tokens_in_all_as_generate_fast(fresh):
    """ROME's generate_fast(max_out_len=n) stops every row at n tokens, its prompt's counted."""
    from neuronmap.edit.experiments.fluency import clean, generate_ids

    lm = fresh("tiny-gpt2")
    prompts = ["Paris is", "The long history of the city of Rome"]
    rows = generate_ids(lm, prompts, gen_length=12, seed=0, opening=[50256])
    for prompt, ids in zip(prompts, rows, strict=True):
        own = lm.tokenizer(prompt)["input_ids"]
        assert ids[: len(own)] == own and len(ids) == 12  # the opening neither counted nor returned
    shortest = generate_ids(lm, prompts, gen_length=2, seed=0)  # at least one new token past the length
    assert [
        len(ids) - len(lm.tokenizer(p)["input_ids"]) for p, ids in zip(prompts, shortest, strict=True)
    ] == [1, 1]
    texts = generate(lm, prompts, gen_length=12, seed=0)
    rows = generate_ids(lm, prompts, gen_length=12, seed=0)
    assert (
        texts
        == [clean(lm.tokenizer.decode(ids)) for ids in rows]
        != [lm.tokenizer.decode(ids) for ids in rows]
    )


def test_words_are_word_tokenize_with_untrained_sentences():
    """nltk.word_tokenize needs Punkt's English model (a download); per sentence it is the Treebank tokenizer
    that ``preserve_line=True`` runs on the whole line, so the words equal that on each sentence."""
    import nltk

    from neuronmap.edit.experiments.fluency import clean, words

    sentences = [
        "Paris is the capital of France.",
        "It has 2.1 million people, the mayor said.",
        '"Yes," he can\'t.',
    ]
    expected = [w for s in sentences for w in nltk.word_tokenize(s, preserve_line=True)]
    assert words(" ".join(sentences)) == expected
    assert words("Paris is in France. It is big.") == [
        "Paris",
        "is",
        "in",
        "France",
        ".",
        "It",
        "is",
        "big",
        ".",
    ]
    assert clean("a\n\nb ﬁ<|endoftext|>") == "a b fi"


def test_record_seeds_do_not_depend_on_the_place_in_the_run():
    from neuronmap.edit.experiments.fluency import record_seed

    assert record_seed(0, "17") == record_seed(0, "17") != record_seed(0, "18") != record_seed(1, "17")
    assert 0 <= record_seed(5, 3) < 2**63


def test_a_chunked_evaluation_equals_one_run(fresh, small_hparams):
    lm = fresh("tiny-gpt2")
    records = load_records(LITE, limit=3)
    options = {"layers": [0], "gen_length": 16, "progress": False}
    whole = evaluate(lm, records, small_hparams, **options).results
    parts = [evaluate(lm, records[:1], small_hparams, **options).results,
             evaluate(lm, records[1:], small_hparams, **options).results]  # fmt: skip
    import pandas as pd

    chunked = pd.concat(parts, ignore_index=True)
    columns = ["case_id", "fluency_pre", "fluency_post", "efficacy_post"]
    pd.testing.assert_frame_equal(whole[columns], chunked[columns])


def test_evaluate_edits_and_restores(fresh, small_hparams):
    lm = fresh("tiny-gpt2")
    before = {k: v.clone() for k, v in lm.model.state_dict().items()}
    records = load_records(LITE, limit=2)
    ev = evaluate(lm, records, small_hparams, layers=[0, 1], gen_length=12, progress=False)
    assert all(torch.equal(v, before[k]) for k, v in lm.model.state_dict().items())
    assert len(ev.results) == 4 and set(ev.results["layer"]) == {0, 1}
    assert ev.summary["layers"] == [0, 1] and set(ev.summary["by_layer"]) == {"0", "1"}
    for key in ("efficacy", "paraphrase", "neighborhood", "score", "fluency"):
        assert set(ev.summary[key]) == {"edited", "unedited"}
    first = ev.results[ev.results["layer"] == 0]
    assert ev.summary["efficacy"]["edited"] == pytest.approx(first["efficacy_post"].mean())
    # The unedited columns do not depend on the layer.
    assert (ev.results.groupby("case_id")["p_new_pre"].nunique() == 1).all()


def test_summarise_harmonic_mean():
    import pandas as pd

    rows = pd.DataFrame(
        {
            f"{m}_{s}": [v]
            for m, v in (("efficacy", 1.0), ("paraphrase", 0.5), ("neighborhood", 0.5))
            for s in ("pre", "post")
        }
    )
    assert summarise(rows)["score"]["edited"] == pytest.approx(3 / (1 + 2 + 2))


class Stopped(Exception):
    pass


def _stop_at_group(monkeypatch, n: int, calls: list[int]) -> None:
    """Count the groups edited; the ``n``-th (from 1) raises, once, as a kill would stop the run there."""
    from neuronmap.edit.experiments import evaluate as module

    real, stopped = module._apply, []

    def apply(*args, **kwargs):
        calls.append(1)
        if len(calls) == n and not stopped:
            stopped.append(1)
            raise Stopped
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "_apply", apply)


@pytest.mark.parametrize("algorithm", ["rome", "memit"])
def test_a_stopped_evaluation_resumes_to_the_uninterrupted_rows(fresh, small_hparams, tmp_path, monkeypatch,
                                                               algorithm):  # fmt: skip
    """Groups done before a stop are read back, not edited again, and the run ends with an uninterrupted run's
    tables; MEMIT's per-group diagnostics come back too."""
    import json

    import pandas as pd

    from neuronmap.edit.api import run_eval

    lm = fresh("tiny-gpt2")
    hp = tmp_path / "hp.json"
    fields = small_hparams.to_dict() if algorithm == "rome" else {"layers": [0], "mom2_adjustment": False}
    hp.write_text(json.dumps({k: v for k, v in fields.items() if k != "source"}))
    options = {"facts": LITE, "limit": 2, "hparams": str(hp), "gen_length": 8, "progress": False,
               "algorithm": algorithm}  # fmt: skip
    run_eval(tmp_path / "whole", lm, **options)
    calls: list[int] = []
    _stop_at_group(monkeypatch, 2, calls)
    with pytest.raises(Stopped):
        run_eval(tmp_path / "stopped", lm, **options)
    assert sorted(p.name for p in (tmp_path / "stopped" / "parts").glob("*.parquet")) == [
        "group-00000.parquet"
    ]
    run = json.loads((tmp_path / "stopped" / "run.json").read_text())
    assert run["stages"]["edit_eval"]["status"] == "running"
    calls.clear()
    run_eval(tmp_path / "stopped", lm, **options)
    assert len(calls) == 1  # only the second group was edited again
    assert not (tmp_path / "stopped" / "parts").exists()
    whole, resumed = (pd.read_parquet(tmp_path / d / "results.parquet") for d in ("whole", "stopped"))
    pd.testing.assert_frame_equal(whole, resumed)
    summaries = [json.loads((tmp_path / d / "summary.json").read_text()) for d in ("whole", "stopped")]
    assert [{k: v for k, v in s.items() if k not in ("seconds", "timing")} for s in summaries] == [
        {k: v for k, v in summaries[0].items() if k not in ("seconds", "timing")}] * 2  # fmt: skip
    if algorithm == "memit":
        assert [d["batch"] for d in summaries[1]["memit"]] == [0, 1]


def test_a_stopped_evaluation_with_other_settings_starts_again(fresh, small_hparams, tmp_path, monkeypatch):
    """The rows depend on more than the recorded parameters: another fluency length starts anew."""
    import json

    from neuronmap.edit.api import run_eval

    lm = fresh("tiny-gpt2")
    hp = tmp_path / "hp.json"
    hp.write_text(json.dumps({k: v for k, v in small_hparams.to_dict().items() if k != "source"}))
    options = {"facts": LITE, "limit": 2, "hparams": str(hp), "progress": False}
    calls: list[int] = []
    _stop_at_group(monkeypatch, 2, calls)
    with pytest.raises(Stopped):
        run_eval(tmp_path / "ev", lm, gen_length=8, **options)
    calls.clear()
    summary = run_eval(tmp_path / "ev", lm, gen_length=6, **options)
    assert len(calls) == 2 and summary["fluency_length"] == 6


def test_a_group_of_records_has_its_own_bar_of_scores_and_edits(fresh, memit_hparams, monkeypatch, capsys):
    """A mass edit is one long step of the run's bar: its group's bar counts each record scored, each target
    search and each record scored again (log lines where stderr is not a terminal)."""
    from neuronmap import progress

    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    records = load_records(LITE)[:2]
    evaluate(fresh("tiny-gpt2"), records, memit_hparams.replace(layers=(0,)), algorithm="memit", batch=2,
             with_fluency=False)  # fmt: skip
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("group 1: ")]
    assert [line.split(" step")[0] for line in lines] == [f"group 1: {n}/6" for n in (1, 2, 3, 4, 5, 6, 6)]
