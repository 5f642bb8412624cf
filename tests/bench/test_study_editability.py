"""The README's study table from ``bench.study_editability``: ordered by adjusted p, every measure named."""

from __future__ import annotations

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
