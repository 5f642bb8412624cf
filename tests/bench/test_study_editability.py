"""The README's study table from ``bench.study_editability``: ordered by adjusted p, every measure named."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from bench.study_editability import LABELS, table
from neuronmap.study.api import EDIT_MEASURES, SHAPE_MEASURES


def test_every_measure_of_the_study_has_a_readme_label() -> None:
    assert set(SHAPE_MEASURES) | set(EDIT_MEASURES) <= set(LABELS)


def test_table_keeps_the_smallest_adjusted_p_values_and_bolds_the_significant() -> None:
    corr = pd.DataFrame(
        {
            "shape": ["gini", "neurons_50", "mlp_peak_layer", "p_clean"],
            "editability": ["flip_norm"] * 4,
            "n": [50, 50, 50, 49],
            "rho": [-0.41, 0.2, 0.6, float("nan")],
            "ci_low": [-0.6, -0.1, -0.1, float("nan")],
            "ci_high": [-0.2, 0.45, 0.8, float("nan")],
            "p_adjusted": [0.01, 0.3, 0.3, float("nan")],
            "significant": [True, False, False, False],
        }
    )
    lines = table(corr, rows=2).splitlines()
    assert lines[2] == "| Gini of the attribution | flip norm | 50 | **-0.41** | -0.60 to -0.20 | **0.01** |"
    # equal p: the stronger correlation first; the untested (NaN) pair never shows
    assert lines[3].startswith("| MLP peak layer | flip norm | 50 | +0.60 |") and len(lines) == 4


def test_section_reads_a_collected_study(tmp_path, monkeypatch) -> None:
    """A finished study copied by ``collect`` gives the README section: its table, its counts and rates from the
    facts table, and every line of the generated conclusion."""
    from bench.study_editability import collect, section
    from neuronmap.edit.hparams import RomeHparams
    from neuronmap.models.loader import load_model
    from neuronmap.study import study_editability

    monkeypatch.setenv("NEURONMAP_CACHE", str(tmp_path / "cache"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("Paris is the capital of France.\nTokyo is the capital of Japan.\n" * 6)
    hp = RomeHparams(layer=1, v_num_grad_steps=2, mom2_corpus=str(corpus), mom2_n_tokens=100, mom2_max_length=32,
                     mom2_ridge=1e-3)  # fmt: skip
    (tmp_path / "hp.json").write_text(json.dumps(hp.to_dict()))
    out, result = tmp_path / "study", tmp_path / "result"
    lm = load_model("tiny-gpt2", dtype="float64")
    summary = study_editability(lm, "builtin:facts", out, limit=5, hparams=str(tmp_path / "hp.json"), keep="all",
                                n_boot=100, flip_iters=3, formats=("png",), progress=False)  # fmt: skip
    collect(out, result)
    assert sorted(p.name for p in (result / "figures").iterdir()) == sorted(
        Path(f).name for f in summary["figures"]
    )
    assert json.loads((result / "params.json").read_text())["sweep_layers"] == [0, 1]
    for name in ("sweep.parquet", "profiles.parquet", "facts.parquet"):  # deterministic: byte for byte
        assert (result / name).read_bytes() == (out / name).read_bytes()
    text = section(result)
    facts = pd.read_parquet(result / "facts.parquet")
    assert table(pd.read_parquet(result / "correlations.parquet")) in text
    assert text.startswith(f"{summary['facts']} facts: ") and f"; {len(facts)} studied," in text
    assert f"efficacy {100 * facts['efficacy'].mean():.0f}%" in text
    assert f"the median flip norm is {facts['flip_norm'].median():.2f}." in text
    assert all(f"- {line}" in text for line in summary["conclusion"])
