"""MEMIT against ROME on CounterFact-lite: ``python -m bench.memit_counterfact``.

For each size N of ``--sizes`` (default 10, 100 and all 242 records of ``builtin:counterfact-lite``), the first N
records are written into SmolLM2-135M *together* by one MEMIT edit (``neuronmap edit-eval --algorithm memit
--batch N --limit N``, the model's ``hparams/memit`` file), scored, and undone. The baselines, on the same
records and prompts:

- **unedited**: the model before any edit (the ``_pre`` columns of the MEMIT run);
- **ROME, one at a time** (``--rome alone``, the default): each record edited alone on the original weights and
  undone (``neuronmap edit-eval``, the README's protocol), in runs of ``--chunk`` records (``rome-alone/OFFSET``)
  that every size shares, since a record's result does not depend on the others: measuring 100 after 10 edits
  the 90 new records only;
- **ROME, one after another** (``--rome sequential``, opt-in): the N records edited in turn into the same model
  (``--batch N``), each on the weights the earlier ones left, then scored together: ROME used as a mass editor.

Reported per size and method: efficacy (ES), paraphrase (PS) and neighbourhood (NS) success, their magnitudes,
the score (harmonic mean) and, with ``--fluency``, fluency; the same per relation for both methods and per chunk
for ROME alone (where an average hides which records an edit damages). Each run is a child process (the CLI a user runs),
timed with its peak memory (``bench.edit_runs.child``); a run whose folder already holds ``results.parquet`` is
read, not redone, and a run stopped half-way resumes (``edit-eval`` keeps its records as they are done). Results go to ``bench/results/memit_counterfact.json`` (``--result``) and a table is printed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.edit_runs import METRICS, by_relation, child, scores

HERE = Path(__file__).parent
RESULT = HERE / "results" / "memit_counterfact.json"
FACTS = "builtin:counterfact-lite"
ROME_MODES = ("alone", "sequential")
ROME_SETTINGS = ("layer", "clamp_norm_factor", "kl_direction", "context_templates", "v_num_grad_steps")
MEMIT_SETTINGS = (
    "layers",
    "mom2_update_weight",
    "clamp_norm_factor",
    "context_templates",
    "v_num_grad_steps",
)


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import pandas as pd

    from neuronmap.edit.dsets import load_records
    from neuronmap.edit.hparams import load_hparams, load_memit_hparams

    rome = load_hparams(args.rome_hparams, model=args.model).to_dict()
    memit = load_memit_hparams(args.memit_hparams, model=args.model).to_dict()
    total = len(load_records(args.facts))
    sizes = sorted({total if s == "all" else min(int(s), total) for s in args.sizes.split(",")})
    common = ["--model", args.model, "--facts", args.facts, "--threads", str(args.threads)]
    common += [] if args.fluency else ["--no-fluency"]
    memit_args = ["--algorithm", "memit"] + (["--hparams", args.memit_hparams] if args.memit_hparams else [])
    rome_args = ["--hparams", args.rome_hparams] if args.rome_hparams else []
    modes = [m.strip() for m in args.rome.split(",") if m.strip()]
    entries = []
    alone_rows = None
    if "alone" in modes:
        chunks = []
        for offset in range(0, max(sizes), args.chunk):
            out = args.runs / "rome-alone" / str(offset)
            chunk = ["--offset", str(offset), "--limit", str(min(args.chunk, max(sizes) - offset))]
            chunks.append(child([*common, *rome_args, *chunk], out, args.nice, rome))
            alone_rows = pd.concat([alone_rows, pd.read_parquet(out / "results.parquet")], ignore_index=True)
        alone_run = {"chunks": chunks, "chunk": args.chunk}
    for n in sizes:
        out = args.runs / f"memit-{n}"
        run = child([*common, *memit_args, "--batch", str(n), "--limit", str(n)], out, args.nice, memit)
        rows = pd.read_parquet(out / "results.parquet")
        summary = json.loads((out / "summary.json").read_text())
        entry: dict[str, Any] = {
            "records": n,
            "unedited": scores(rows, "unedited"),
            "memit": scores(rows, "edited"),
            "memit_run": run | {"layers": summary["layers"], "diagnostics": summary.get("memit")},
        }
        entry["memit_relations"] = by_relation(rows)
        if alone_rows is not None:
            alone = alone_rows.iloc[:n]
            entry["rome_alone"] = scores(alone, "edited")
            entry["rome_alone_unedited"] = scores(alone, "unedited")  # with fluency where ROME's runs had it
            entry["rome_alone_relations"] = by_relation(alone)
            entry["rome_alone_chunks"] = [
                {"offset": offset, "unedited": scores(chunk, "unedited"), "edited": scores(chunk, "edited")}
                for offset, chunk in alone.groupby(alone.index // args.chunk * args.chunk)
            ]
            entry["rome_alone_run"] = alone_run | {"records_run": max(sizes)}
        if "sequential" in modes:
            out = args.runs / f"rome-sequential-{n}"
            entry["rome_sequential_run"] = child([*common, *rome_args, "--batch", str(n), "--limit", str(n)], out,
                                                 args.nice, rome)  # fmt: skip
            entry["rome_sequential"] = scores(pd.read_parquet(out / "results.parquet"), "edited")
        entries.append(entry)
        print(table([entry]), flush=True)
    return {
        "model": args.model,
        "facts": args.facts,
        "records_available": total,
        "memit_hparams": args.memit_hparams or "the model's hparams/memit file",
        "rome_hparams": args.rome_hparams or "the model's hparams file",
        "rome_settings": {k: rome[k] for k in ROME_SETTINGS},
        "memit_settings": {k: memit[k] for k in MEMIT_SETTINGS},
        "fluency": args.fluency,
        "entries": entries,
    }


def table(entries: list[dict[str, Any]]) -> str:
    """A Markdown table: per size, each method's ES / PS / NS / score in percent."""
    lines = ["| records | method | ES | PS | NS | score |", "|---:|---|---:|---:|---:|---:|"]
    for e in entries:
        for method in ("unedited", "memit", "rome_alone", "rome_sequential"):
            if method in e:
                m = e[method]
                cells = " | ".join(f"{100 * m[k]:.1f}" for k in METRICS)
                lines.append(f"| {e['records']} | {method.replace('_', ', ')} | {cells} |")
    return "\n".join(lines)


def rome_table(result: dict[str, Any], records: int) -> str:
    """The README's ROME table: the unedited model and ROME alone on the first ``records`` records, in percent
    (fluency in bits), both from ROME's own runs."""
    (entry,) = [e for e in result["entries"] if e["records"] == records]
    rome = result["rome_settings"]
    lines = [
        "| model | n | efficacy | paraphrase | neighbourhood | score | fluency (bits) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, m in (
        (f"{result['model']}, unedited", entry["rome_alone_unedited"]),
        (
            f"{result['model']}, ROME at layer {rome['layer']}, clamp {rome['clamp_norm_factor']:g}",
            entry["rome_alone"],
        ),
    ):
        cells = " | ".join(f"{100 * m[k]:.1f}" for k in METRICS)
        fluency = f"{m['fluency']:.2f}" if "fluency" in m else "not measured"
        lines.append(f"| {label} | {records} | {cells} | {fluency} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10,100,all", help="records edited together, comma-separated")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--facts", default=FACTS)
    parser.add_argument("--memit-hparams", default=None, help="default: the model's hparams/memit file")
    parser.add_argument("--rome-hparams", default=None, help="default: the model's hparams file")
    parser.add_argument("--rome", default="alone", help="ROME baselines: alone, sequential, or both")
    parser.add_argument("--chunk", type=int, default=10, help="records per ROME-alone run (shared by sizes)")
    parser.add_argument("--fluency", action="store_true", help="also sample generations for fluency (slow)")
    parser.add_argument("--runs", type=Path, default=Path("runs/memit-counterfact"), help="where the runs go")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the runs")
    parser.add_argument("--nice", type=int, default=0, help="niceness of the runs (share the machine)")
    parser.add_argument("--result", type=Path, default=RESULT)
    args = parser.parse_args()
    unknown = {m.strip() for m in args.rome.split(",") if m.strip()} - set(ROME_MODES)
    if unknown:
        parser.error(f"--rome takes {' and/or '.join(ROME_MODES)}, got {sorted(unknown)}")
    result = measure(args)
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result["entries"]))


if __name__ == "__main__":
    main()
