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


def _option(args: list[str], flag: str, default: int | None) -> int | None:
    return int(args[args.index(flag) + 1]) if flag in args else default


def _differences(args: list[str], summary: dict[str, Any], hparams: dict[str, Any]) -> list[str]:
    """What a finished run's ``summary`` did otherwise than ``ARGS`` and ``hparams`` ask: hparams fields (but the
    file's layer when ``--layers`` chose the layers, as in a sweep whose model file has since changed), the
    records (``offset``, ``limit``, ``batch``), and fluency when asked for and not measured."""
    unused = {"_source"} | ({"layer", "relative_layer"} if "--layers" in args else set())  # --layers decides
    differ = sorted(k for k in {*summary["hparams"], *hparams} - unused
                    if summary["hparams"].get(k) != hparams.get(k))  # fmt: skip
    default = {"offset": 0, "limit": None, "batch": 1}  # a run edited alone has no batch in its summary
    differ += [k for k, v in default.items() if summary.get(k, v) != _option(args, f"--{k}", v)]
    fluency = summary.get("fluency", {}).get("edited")
    measured = fluency is not None and fluency == fluency  # NaN when the run had --no-fluency
    if not measured and "--no-fluency" not in args:  # a run with fluency serves one without: it measured more
        differ.append("fluency")
    return differ


def child(args: list[str], out: Path, nice: int, hparams: dict[str, Any]) -> dict[str, Any]:
    """``neuronmap edit-eval ARGS --out OUT`` unless OUT holds its results; its time and peak memory. ``hparams``
    (``to_dict()`` of the hparams ARGS name) must be those of a run found in OUT, and so must its records and
    fluency setting: results of other settings (an hparams file changed since, another ``--limit``) are refused,
    never reported as the current ones'."""
    if (out / "results.parquet").is_file():  # its time as the run recorded it; its peak memory is not kept
        summary = json.loads((out / "summary.json").read_text())
        differ = _differences(args, summary, hparams)
        if differ:
            raise SystemExit(
                f"{out} holds a run with other settings ({', '.join(differ)}): move it away to measure these"
            )
        return {"seconds": summary["timing"]["seconds"], "peak_mb": None, "reused": True}
    command = [*NEURONMAP, "edit-eval", *args, "--out", str(out)]
    seconds, usage = run_timed(command, nice=nice)
    return {"seconds": round(seconds, 1), "peak_mb": round(usage.ru_maxrss / 1024), "reused": False}


def scores(rows: Any, state: str) -> dict[str, float]:
    """ES, PS, NS, the score and magnitudes (and fluency when every row measured it: runs with and without
    fluency may be pooled) of ``rows``, edited or unedited."""
    from neuronmap.edit.experiments.evaluate import summarise

    summary = summarise(rows)
    names = [*METRICS, *MAGNITUDES] + (["fluency"] if rows["fluency_post"].notna().all() else [])
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
