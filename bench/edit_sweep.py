"""A held-out sweep of ROME's (or MEMIT's) hparams: ``python -m bench.edit_sweep``.

For each combination of ``--vary FIELD=V1,V2,...`` (any field of the ROME hparams file), the model's own
``hparams/`` file with those values is written to ``RUNS/VARIANT/hparams.json`` and evaluated with ``neuronmap
edit-eval --layers LAYERS --offset OFFSET --limit N --no-fluency`` on held-out CounterFact-lite records (from 100
on: the README's tables are on records 0-99), each record edited alone at each layer. Each run is a timed child
process and resumes when stopped (``edit-eval`` keeps its records as they are done); a variant whose folder holds
its results is read, not redone.

The defaults are issue 17's Gemma sweep: ``gemma3-270m``, records 100-107, layers 1-6, clamp 0.75 / 1.0 / 1.5 and
early stop at a loss of 0.1 (the file's) / 0.5. ``--finished`` reads the variants finished so far and runs none
(while the sweep goes on in another process), listing the others as ``unfinished``. The result file (``--result``, default
``bench/results/edit_sweep-MODEL.json``) holds per variant and layer the edited and unedited efficacy,
paraphrase, neighbourhood and score; ``table`` makes the README's table of it, the best rows marked: the highest
score among rows whose neighbourhood is within 10 points of the unedited model's, else the highest score.

``--algorithm memit`` sweeps the model's ``hparams/memit/`` file instead: each variant writes the records together
(``--batch``, default all of them) over the file's layer range, which ``--vary layers=[1,2,3,4],[3,4]`` varies
(e.g. ``--vary mom2_update_weight=1500,4800,15000``); a row is a variant and its range; runs and result are
``memit-MODEL``'s. The variants share their target searches (MEMIT's z does not depend on lambda or the range
below its last layer: see ``memit``'s ``keep``), so a sweep searches each record once per last layer.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any

from bench.edit_runs import METRICS, child, scores

HERE = Path(__file__).parent
FACTS = "builtin:counterfact-lite"
NEIGHBOURHOOD_SLACK = 0.10  # a row keeps the neighbourhood when it loses at most this much against unedited
DEFAULT_VARY = ("clamp_norm_factor=0.75,1.0,1.5", "early_stop_loss=0.1,0.5")
ROME_LAYERS = "1,2,3,4,5,6"


def parse_vary(items: list[str]) -> dict[str, list[Any]]:
    """``FIELD=V1,V2`` -> {FIELD: [V1, V2]}, values read as JSON (numbers, true/false, lists such as MEMIT's
    ``layers=[1,2,3,4],[3,4]``) or, where the whole is not JSON, split at commas and kept as text."""
    out: dict[str, list[Any]] = {}
    for item in items:
        field, sep, values = item.partition("=")
        if not sep or not field or not values:
            raise SystemExit(f"--vary takes FIELD=V1,V2,... got {item!r}")
        try:
            out[field.strip()] = json.loads(f"[{values}]")
        except json.JSONDecodeError:
            out[field.strip()] = [_value(v.strip()) for v in values.split(",")]
    return out


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def variants(vary: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of the varied values, in the order given."""
    return [dict(zip(vary, combo, strict=True)) for combo in itertools.product(*vary.values())]


def variant_name(variant: dict[str, Any]) -> str:
    def text(v: Any) -> str:
        return ",".join(map(str, v)) if isinstance(v, list) else str(v)

    return "-".join(f"{k}={text(v)}" for k, v in variant.items()) or "file"


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    from neuronmap.edit.hparams import load_hparams, load_memit_hparams

    memit = args.algorithm == "memit"
    base = (load_memit_hparams if memit else load_hparams)(args.hparams, model=args.model)
    layers = args.layers or ("" if memit else ROME_LAYERS)  # MEMIT: the file's range unless given or varied
    entries, unfinished = [], []
    for variant in variants(parse_vary(args.vary or list(DEFAULT_VARY))):
        # lists (MEMIT's layers) as the hparams hold them; an unknown field stops here, naming it
        hp = base.replace(**{k: tuple(v) if isinstance(v, list) else v for k, v in variant.items()})
        out = args.runs / variant_name(variant)
        if args.finished and not (out / "eval" / "results.parquet").is_file():
            unfinished.append(variant_name(variant))  # a sweep under way: reported, not run
            continue
        out.mkdir(parents=True, exist_ok=True)
        (out / "hparams.json").write_text(json.dumps(hp.to_dict(), indent=2) + "\n")
        command = ["--model", args.model, "--facts", args.facts, "--hparams", str(out / "hparams.json"),
                   "--offset", str(args.offset), "--limit", str(args.limit), "--no-fluency",
                   "--threads", str(args.threads)]  # fmt: skip
        command += ["--layers", layers] if layers else []
        command += ["--algorithm", "memit", "--batch", str(args.batch or args.limit)] if memit else []
        run = child(command, out / "eval", args.nice, hp.to_dict())
        rows = pd.read_parquet(out / "eval" / "results.parquet")
        # ROME: one row per record and layer edited; MEMIT: one range per run (``layers``)
        for layer, at in rows.groupby("layers" if memit else "layer", sort=True):
            entries.append({"variant": variant, "layer": layer if memit else int(layer),
                            "edited": scores(at, "edited"), "unedited": scores(at, "unedited"),
                            "run": run})  # fmt: skip
    return {
        "model": args.model,
        "algorithm": args.algorithm,
        "facts": args.facts,
        "records": [args.offset, args.offset + args.limit - 1],
        "hparams": args.hparams or "the model's hparams file",
        "base_hparams": base.to_dict(),  # what each variant changes, as it was when the sweep ran
        "entries": entries,
        "unfinished": unfinished,
    }


def best(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest score among rows that keep the neighbourhood (see ``NEIGHBOURHOOD_SLACK``), else overall."""
    keeping = [
        e
        for e in entries
        if e["unedited"]["neighborhood"] - e["edited"]["neighborhood"] <= NEIGHBOURHOOD_SLACK + 1e-12
    ]
    return max(keeping or entries, key=lambda e: e["edited"]["score"])


def table(result: dict[str, Any]) -> str:
    """A Markdown table: per variant and layer, ES / PS / NS / score in percent; the best row in bold. A MEMIT
    sweep's varied ``layers`` show in its range column alone."""
    entries = result["entries"]
    memit = result.get("algorithm") == "memit"
    fields = [f for f in (entries[0]["variant"] if entries else []) if not (memit and f == "layers")]
    chosen = best(entries) if entries else None
    head = [f.replace("_", " ") for f in fields] + [
        "range" if memit else "layer",
        "efficacy",
        "paraphrase",
        "neighbourhood",
        "score",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for e in entries:
        cells = [str(e["variant"][f]) for f in fields] + [str(e["layer"])]
        cells += [f"{100 * e['edited'][m]:.1f}" for m in METRICS]
        if e is chosen:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--facts", default=FACTS)
    parser.add_argument("--hparams", default=None, help="the base hparams (default: the model's file)")
    parser.add_argument("--vary", action="append", help="FIELD=V1,V2,... (repeat; default: the Gemma sweep)")
    parser.add_argument("--algorithm", choices=("rome", "memit"), default="rome")
    parser.add_argument(
        "--layers",
        default=None,
        help=f"ROME: layers edited, comma-separated ({ROME_LAYERS}); MEMIT: the range (the file's)",
    )
    parser.add_argument(
        "--batch", type=int, default=None, help="MEMIT: records edited together (all of them)"
    )
    parser.add_argument(
        "--finished",
        action="store_true",
        help="read the finished variants only (a sweep under way elsewhere); the others are listed as unfinished",
    )
    parser.add_argument("--offset", type=int, default=100, help="first record (held out: 100 on)")
    parser.add_argument("--limit", type=int, default=8, help="records")
    parser.add_argument("--runs", type=Path, default=None, help="where the runs go (runs/edit-sweep/MODEL)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the runs")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the runs (share the machine)")
    parser.add_argument(
        "--result",
        type=Path,
        default=None,
        help="bench/results/edit_sweep-MODEL.json (MEMIT: edit_sweep-memit-MODEL.json)",
    )
    args = parser.parse_args()
    # a MEMIT sweep of a model has runs and a result file apart from its ROME sweep
    name = ("memit-" if args.algorithm == "memit" else "") + args.model.rstrip("/").split("/")[-1]
    args.runs = args.runs or Path("runs/edit-sweep") / name
    result_path = args.result or HERE / "results" / f"edit_sweep-{name}.json"
    result = measure(args)
    unedited = result["entries"][0]["unedited"] if result["entries"] else None
    result["unedited"] = unedited
    result_path.parent.mkdir(parents=True, exist_ok=True)
    result_path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    if unedited:
        print("unedited: " + " / ".join(f"{m} {100 * unedited[m]:.1f}" for m in METRICS))
    if result["unfinished"]:
        print("unfinished: " + ", ".join(result["unfinished"]))


if __name__ == "__main__":
    main()
