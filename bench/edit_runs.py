"""What the edit benchmarks share: ``neuronmap edit-eval`` as a timed child process, and its scores."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench.timing import run_timed

NEURONMAP = [sys.executable, "-m", "neuronmap"]
METRICS = ("efficacy", "paraphrase", "neighborhood", "score")
MAGNITUDES = ("efficacy_magnitude", "paraphrase_magnitude", "neighborhood_magnitude")


def child(args: list[str], out: Path, nice: int, hparams: dict[str, Any]) -> dict[str, Any]:
    """``neuronmap edit-eval ARGS --out OUT`` unless OUT holds its results; its time and peak memory. ``hparams``
    (``to_dict()`` of the hparams ARGS name) must be those of a run found in OUT: results of other settings (an
    hparams file changed since) are refused, never reported as the current ones'."""
    if (out / "results.parquet").is_file():  # its time as the run recorded it; its peak memory is not kept
        summary = json.loads((out / "summary.json").read_text())
        differ = sorted(k for k in {*summary["hparams"], *hparams} - {"_source"}
                        if summary["hparams"].get(k) != hparams.get(k))  # fmt: skip
        if differ:
            raise SystemExit(
                f"{out} holds a run with other hparams ({', '.join(differ)}): move it away to measure these"
            )
        return {"seconds": summary["timing"]["seconds"], "peak_mb": None, "reused": True}
    command = [*NEURONMAP, "edit-eval", *args, "--out", str(out)]
    seconds, usage = run_timed(command, nice=nice)
    return {"seconds": round(seconds, 1), "peak_mb": round(usage.ru_maxrss / 1024), "reused": False}


def scores(rows: Any, state: str) -> dict[str, float]:
    """ES, PS, NS, the score and magnitudes (and fluency when measured) of ``rows``, edited or unedited."""
    from neuronmap.edit.experiments.evaluate import summarise

    summary = summarise(rows)
    names = [*METRICS, *MAGNITUDES] + (["fluency"] if rows["fluency_post"].notna().any() else [])
    return {name: summary[name][state] for name in names}


def by_relation(rows: Any) -> dict[str, dict[str, Any]]:
    """Per relation of ``rows``: its record count and its unedited and edited scores."""
    return {
        str(relation): {
            "records": len(group),
            "unedited": scores(group, "unedited"),
            "edited": scores(group, "edited"),
        }
        for relation, group in rows.groupby("relation", sort=True)
    }
