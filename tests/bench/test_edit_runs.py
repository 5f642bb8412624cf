"""``bench.edit_runs.child``: a finished run is read back only when it ran with the settings asked for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.edit_runs import child

RAN = {"_source": "then", "layer": 4, "clamp_norm_factor": 1.5, "layers": [1, 2]}


def _finished(out: Path, **summary: object) -> Path:
    out.mkdir()
    (out / "results.parquet").write_bytes(b"")  # present: the run finished
    (out / "summary.json").write_text(json.dumps({"hparams": RAN, "timing": {"seconds": 12.5}, **summary}))
    return out


def test_a_finished_run_is_reused_only_with_its_own_hparams(tmp_path) -> None:
    out = _finished(tmp_path / "run", fluency={"edited": 6.2, "unedited": 6.1})
    same = {**RAN, "_source": "now"}  # the file's note may change; its settings may not
    assert child(["--anything"], out, 0, same) == {"seconds": 12.5, "peak_mb": None, "reused": True}
    with pytest.raises(SystemExit, match=r"holds a run with other settings \(clamp_norm_factor, kl_factor\)"):
        child(["--anything"], out, 0, {**RAN, "clamp_norm_factor": 1.0, "kl_factor": 0.0625})
    # the file's own layer does not matter where --layers chose the layers edited
    assert child(["--layers", "1,2"], out, 0, {**RAN, "layer": 1})["reused"]
    with pytest.raises(SystemExit, match=r"other settings \(layer\)"):
        child(["--anything"], out, 0, {**RAN, "layer": 1})


def test_a_finished_run_is_reused_only_for_its_own_records_and_fluency(tmp_path) -> None:
    """edit-eval's summary says which records it ran (offset, limit, batch) and whether fluency was measured
    (NaN when not): another --limit, --offset or --batch is refused, and so is a run without fluency when fluency
    is asked for (a run with it serves one without)."""
    with_fluency = _finished(tmp_path / "a", offset=0, limit=10, fluency={"edited": 6.2, "unedited": 6.1})
    asked = ["--offset", "0", "--limit", "10"]
    assert child(asked, with_fluency, 0, RAN)["reused"]
    assert child([*asked, "--no-fluency"], with_fluency, 0, RAN)["reused"]
    for args, name in (
        (["--offset", "10", "--limit", "10"], "offset"),
        (["--limit", "100"], "limit"),
        ([*asked, "--batch", "10"], "batch"),  # a grouped run says its batch; a run without one edited alone
    ):
        with pytest.raises(SystemExit, match=rf"other settings \({name}\)"):
            child(args, with_fluency, 0, RAN)
    without = _finished(tmp_path / "b", offset=0, limit=10, batch=10, fluency={"edited": float("nan")})
    assert child([*asked, "--batch", "10", "--no-fluency"], without, 0, RAN)["reused"]
    with pytest.raises(SystemExit, match=r"other settings \(fluency\)"):
        child([*asked, "--batch", "10"], without, 0, RAN)


def test_scores_give_fluency_only_when_every_row_measured_it() -> None:
    """Pooled runs with and without fluency (the ROME-alone chunks of one size) report no fluency rather than the
    mean of the rows that have it."""
    import pandas as pd

    from bench.edit_runs import METRICS, scores

    columns = {
        f"{m}_{s}": [1.0, 0.0] for m in ("efficacy", "paraphrase", "neighborhood") for s in ("pre", "post")
    }
    columns |= {f"{m}_magnitude_{s}": [0.1, 0.2] for m in ("efficacy", "paraphrase", "neighborhood")
                for s in ("pre", "post")}  # fmt: skip
    both = pd.DataFrame({**columns, "fluency_pre": [6.0, 6.2], "fluency_post": [5.9, 6.1]})
    assert scores(both, "edited")["fluency"] == pytest.approx(6.0)
    mixed = both.assign(fluency_pre=[6.0, float("nan")], fluency_post=[5.9, float("nan")])
    assert "fluency" not in scores(mixed, "edited") and set(METRICS) <= set(scores(mixed, "edited"))
