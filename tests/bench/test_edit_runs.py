"""``bench.edit_runs.child``: a finished run is read back only when it ran with the hparams asked for."""

from __future__ import annotations

import json

import pytest

from bench.edit_runs import child


def test_a_finished_run_is_reused_only_with_its_own_hparams(tmp_path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "results.parquet").write_bytes(b"")  # present: the run finished
    ran = {"_source": "then", "layer": 4, "clamp_norm_factor": 1.5, "layers": [1, 2]}
    (out / "summary.json").write_text(json.dumps({"hparams": ran, "timing": {"seconds": 12.5}}))
    same = {**ran, "_source": "now"}  # the file's note may change; its settings may not
    assert child(["--anything"], out, 0, same) == {"seconds": 12.5, "peak_mb": None, "reused": True}
    with pytest.raises(SystemExit, match=r"holds a run with other hparams \(clamp_norm_factor, kl_factor\)"):
        child(["--anything"], out, 0, {**ran, "clamp_norm_factor": 1.0, "kl_factor": 0.0625})
