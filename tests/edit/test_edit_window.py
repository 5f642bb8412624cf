"""The edit wing's prompts against the model's window: refused with one line naming where, before any model work."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from neuronmap.edit.window import PREFIX_SLACK, prefix_tokens
from neuronmap.models.tiny import gpt2_tokenizer

LONG = " ".join(f"w{i}" for i in range(150))  # 300 GPT-2 tokens: over tiny-gpt2's window of 256


def _tokens(text: str) -> int:
    return len(gpt2_tokenizer()(text)["input_ids"])


def _record(**over: object) -> dict:
    record = {
        "case_id": 7,
        "requested_rewrite": {"prompt": "{} is the capital of", "subject": "Rome",
                              "target_new": {"str": "France"}, "target_true": {"str": "Italy"}},
        "paraphrase_prompts": ["Rome, the city, is the capital of"],
        "neighborhood_prompts": ["Milan is a city of"],
        "generation_prompts": ["Rome is"],
    }  # fmt: skip
    record.update(over)
    return record


def _one_line(proc, message: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_prefix_tokens_follow_the_hparams(small_hparams) -> None:
    assert prefix_tokens(small_hparams) == 3 + PREFIX_SLACK
    assert prefix_tokens(small_hparams.replace(context_template_length_params=())) == 0


def test_edit_refuses_a_long_prompt(run, tmp_path: Path, hparams_file: Path) -> None:
    proc = run("edit", "--model", "tiny-gpt2", "--hparams", str(hparams_file), "--prompt", LONG + " {} is in",
               "--subject", "Rome", "--target-new", "Paris", "--save", str(tmp_path / "d.safetensors"))  # fmt: skip
    n = _tokens(LONG + " Rome is in") + _tokens(" Paris") + 3 + PREFIX_SLACK  # + a context prefix
    _one_line(proc, f"--prompt: the rewrite prompt with its target and a context prefix is {n} "
                    "tokens, longer than the model's window of 256")  # fmt: skip
    assert not (tmp_path / "d.safetensors").exists()


@pytest.mark.parametrize(
    ("field", "value", "what"),
    [
        ("paraphrase_prompts", [LONG], "a paraphrase prompt with its target"),
        ("neighborhood_prompts", ["short", LONG], "a neighbourhood prompt with its target"),
        (
            "generation_prompts",
            [" ".join(f"w{i}" for i in range(150))],  # past the window by itself
            "a generation prompt sampled to 100 tokens",
        ),
    ],
)
def test_edit_eval_names_the_file_and_case(
    run, tmp_path: Path, hparams_file: Path, field: str, value: list, what: str
) -> None:
    facts = tmp_path / "cf.json"
    facts.write_text(json.dumps([_record(), _record(case_id=9, **{field: value})]))
    out = tmp_path / "eval"
    proc = run("edit-eval", "--model", "tiny-gpt2", "--hparams", str(hparams_file), "--facts", str(facts),
               "--out", str(out))  # fmt: skip
    _one_line(proc, f"{facts}: case 9: {what} is ")
    assert "longer than the model's window of 256" in proc.stderr
    assert not out.exists()


def test_causal_trace_names_the_line(run, tmp_path: Path) -> None:
    facts = tmp_path / "facts.jsonl"
    rows = [{"text": "Rome is in", "target": "Italy", "subject": "Rome"},
            {"text": LONG + " Paris is in", "target": "France", "subject": "Paris"}]  # fmt: skip
    facts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "ct"
    proc = run(
        "causal-trace", "--model", "tiny-gpt2", "--facts", str(facts), "--out", str(out), "--keep", "all"
    )
    _one_line(proc, f"{facts}: line 2: ")
    assert "tokens, longer than the model's window of 256" in proc.stderr
    assert not out.exists()


def test_stats_refuse_a_text_length_past_the_window(run, corpus_file: Path) -> None:
    proc = run(
        "stats", "--model", "tiny-gpt2", "--corpus", str(corpus_file), "--layer", "0", "--max-length", "300"
    )
    _one_line(proc, "the statistics' text length 300 (--max-length, or mom2_max_length in the hparams) is longer "
                    "than the model's window of 256")  # fmt: skip


def test_study_names_the_fact(run, tmp_path: Path, hparams_file: Path) -> None:
    facts = tmp_path / "cf.json"
    facts.write_text(json.dumps([_record(), _record(case_id=9, paraphrase_prompts=[LONG])]))
    out = tmp_path / "study"
    proc = run("study", "editability", "--model", "tiny-gpt2", "--hparams", str(hparams_file), "--facts", str(facts),
               "--out", str(out), "--keep", "all")  # fmt: skip
    _one_line(proc, f"{facts}: fact 2 (Rome): a paraphrase prompt with its target is ")
    assert not out.exists()


def test_outliers_refuse_a_max_length_past_the_encoder_window(tiny_models) -> None:
    from neuronmap.errors import NeuronmapError
    from neuronmap.outliers.embed import encode

    bert = tiny_models("tiny-bert", "float32")
    with pytest.raises(
        NeuronmapError, match=f"--max-length 1000 is longer than the encoder's window of {bert.window}"
    ):
        encode(bert, ["a text"], max_length=1000, progress=False)


def test_causal_trace_passes_shrink_to_fit_and_give_the_same_table(fresh) -> None:
    from neuronmap.edit.dsets import Fact
    from neuronmap.edit.experiments.causal_trace import (
        TraceSettings,
        encode_trace_fact,
        fact_bytes,
        positions_per_pass,
        trace_fact,
    )
    from neuronmap.models.memory import Budget

    lm = fresh("tiny-gpt2")
    fact = Fact(0, "The city of {} lies in the country of", "Rome", "Italy")
    settings = TraceSettings(samples=4, max_rows=48, noise_std=0.5, kinds=("hidden", "mlp"))
    enc, _ = encode_trace_fact(lm, fact)
    fp = lm.footprint
    assert positions_per_pass(lm, settings, enc, None) == 12
    fits_three = Budget(fact_bytes(fp, settings, len(enc.input_ids), 1, 3 * 4), "test")
    assert positions_per_pass(lm, settings, enc, fits_three) == 3  # 12 -> 6 -> 3
    whole = trace_fact(lm, fact, settings)
    split = trace_fact(lm, fact, settings, budget=fits_three)
    pd.testing.assert_frame_equal(split.table, whole.table, rtol=1e-9)


def test_causal_trace_refuses_a_fact_that_cannot_fit(run, tmp_path: Path) -> None:
    out = tmp_path / "ct"
    proc = run("causal-trace", "--model", "tiny-gpt2", "--prompt", "{} is in", "--subject", "Rome", "--out", str(out),
               "--max-memory", "20MB")  # fmt: skip
    _one_line(proc, "--prompt: ")
    assert "to trace with 10 samples, more than the 20 MB (--max-memory 20MB)" in proc.stderr
    assert not out.exists()


def test_edit_eval_scoring_batches_shrink_to_fit(fresh, small_hparams) -> None:
    from neuronmap.edit.dsets import parse_record
    from neuronmap.edit.experiments.evaluate import check_record, plan_memory
    from neuronmap.models.memory import Budget

    lm = fresh("tiny-gpt2")
    record = parse_record(_record(paraphrase_prompts=[" ".join(["Rome"] * 200) + " is the capital of"]), "r")
    size = check_record(lm, small_hparams, record, 20, "r")
    # sampled to 20 tokens in all, the prompt's counted
    assert size.scored > 200 and size.generation == 20 > len(gpt2_tokenizer()("Rome is")["input_ids"])
    fp = lm.footprint
    for fits in (32, 12, 6):  # budgets where scoring, not the edit or the generation, is the largest pass
        need = fp.pass_bytes(fits, size.scored, 0, size.targets)
        rows = plan_memory(lm, small_hparams, [("r", size)], [1], 32, Budget(need, "test"))
        # the largest of 32, 16, 8, ... whose pass fits, found by trying each
        want = max(r for r in (32, 16, 8, 4, 2, 1) if fp.pass_bytes(r, size.scored, 0, size.targets) <= need)
        assert rows == want


def test_edit_eval_refuses_a_record_that_cannot_fit(run, tmp_path: Path, hparams_file: Path) -> None:
    facts = tmp_path / "cf.json"
    facts.write_text(json.dumps([_record()]))
    out = tmp_path / "eval"
    proc = run("edit-eval", "--model", "tiny-gpt2", "--hparams", str(hparams_file), "--facts", str(facts),
               "--out", str(out), "--max-memory", "20MB")  # fmt: skip
    _one_line(proc, f"{facts}: case 7: the edit need about ")
    assert "more than the 20 MB (--max-memory 20MB); try a larger --max-memory" in proc.stderr
    assert not out.exists()
