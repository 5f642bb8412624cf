"""The study end to end on a tiny random model with a handful of facts, through the API and the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from neuronmap.errors import NeuronmapError

CORPUS = [
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.",
    "Rome is the capital city of Italy and a special comune.",
    "Tokyo is the capital and most populous city of Japan.",
    "Berlin is the capital and largest city of Germany by population.",
]


@pytest.fixture
def hparams_file(tmp_path, tmp_path_factory, monkeypatch):
    """Cheap ROME hparams (statistics from a tiny corpus) and a private cache."""
    from neuronmap.edit.hparams import RomeHparams

    monkeypatch.setenv("NEURONMAP_CACHE", str(tmp_path_factory.getbasetemp() / "nm-cache"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS * 3) + "\n")
    hp = RomeHparams(
        layer=1, v_num_grad_steps=3, mom2_corpus=str(corpus), mom2_n_tokens=100, mom2_max_length=32
    )
    path = tmp_path / "hp.json"
    path.write_text(json.dumps(hp.replace(mom2_ridge=1e-3).to_dict()))
    return path


def test_study_end_to_end(tmp_path, hparams_file):
    from neuronmap.models.loader import load_model
    from neuronmap.study import study_editability
    from neuronmap.study.api import EDIT_MEASURES, SHAPE_MEASURES

    lm = load_model("tiny-gpt2", dtype="float64")
    out = tmp_path / "study"
    s = study_editability(
        lm, "builtin:facts", out, limit=5, hparams=str(hparams_file), keep="all", n_boot=200,
        flip_iters=4, formats=(), progress=False,
    )  # fmt: skip
    for name in ("facts.parquet", "profiles.parquet", "sweep.parquet", "correlations.parquet",
                 "facts_unknown.parquet", "summary.json", "run.json", "report.md", "report.html"):  # fmt: skip
        assert (out / name).is_file(), name
    table = pd.read_parquet(out / "facts.parquet")
    assert len(table) == 5 and s["studied"] == 5
    # the seed facts lead the default set and are marked
    assert list(table["seed"][:3]) == ["Eiffel Tower", "White House", "California"]
    for col in (*SHAPE_MEASURES, *EDIT_MEASURES, "best_layer", "shape_class", "flip_status", "neurons_50",
                "live_index", "live_token", "live_is_last", "mlp_peak_effect_last", "neurons_80_last"):  # fmt: skip
        assert col in table.columns, col
    # the shape where the fact lives, and ROME's last-token convention beside it: the same where they coincide
    same = table[table["live_is_last"]]
    assert np.allclose(same["mlp_peak_effect"], same["mlp_peak_effect_last"], equal_nan=True)
    profiles = pd.read_parquet(out / "profiles.parquet")
    for row in table.itertuples():
        mlp = profiles[(profiles["fact_id"] == row.fact_id) & (profiles["kind"] == "mlp")]
        peaks = mlp.groupby("subject_index")["indirect"].max()
        assert peaks[row.live_index] == peaks.max() and row.mlp_peak_effect == pytest.approx(peaks.max())
    assert table["flip_norm"].between(0.01, 4.0).all()
    assert set(table["best_layer"]) <= {0, 1}  # the sweep of a two-layer model
    corr = pd.read_parquet(out / "correlations.parquet")
    assert len(corr) == len(SHAPE_MEASURES) * len(EDIT_MEASURES)
    for col in ("rho", "ci_low", "ci_high", "p", "p_adjusted", "n"):
        assert col in corr.columns
    ok = corr.dropna(subset=["rho"])
    assert len(ok) > 0
    assert np.isfinite(ok[["rho", "ci_low", "ci_high", "p", "p_adjusted"]].to_numpy()).all()
    assert ((ok["ci_low"] <= ok["rho"] + 1e-9) & (ok["rho"] <= ok["ci_high"] + 1e-9)).all()
    # the unknown facts are listed, not dropped silently
    unknown = pd.read_parquet(out / "facts_unknown.parquet")
    assert s["unknown"] == len(unknown) and (len(unknown) == 0 or unknown["studied"].all())
    md = (out / "report.md").read_text()
    for heading in ("## Conclusion", "## Correlations", "## Best layer vs peak causal layer", "## Per-fact table",
                    "## Facts the model does not know", "## Settings and budget choices"):  # fmt: skip
        assert heading in md
    assert "Eiffel Tower" in md and "Hase et al." in md
    assert "prefixes: bare (the rewrite prompt alone, no generated context prefixes)" in md
    html = (out / "report.html").read_text()
    assert html.startswith("<!doctype html>") and "<table" in html and "<script" not in html
    assert s["figures"] == []  # formats=(): the figures have their own test
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["stages"]["study"]["params"]["seed"] == 0
    # the statistics and report made again from the tables and run.json: the same bytes (summary and timing too)
    from neuronmap.study import study_report

    remade = ("facts.parquet", "facts_unknown.parquet", "correlations.parquet", "report.md", "report.html",
              "summary.json")  # fmt: skip
    before = {name: (out / name).read_bytes() for name in remade}
    (out / "correlations.parquet").unlink()
    (out / "report.md").write_text("stale")
    again = study_report(out, formats=())
    assert {name: (out / name).read_bytes() for name in remade} == before
    assert again["conclusion"] == s["conclusion"] and again["report"] == s["report"]
    record = json.loads((out / "run.json").read_text())["stages"]["study_report"]
    assert record["status"] == "complete" and "correlations.parquet" in record["outputs"]


@pytest.mark.parametrize(
    ("manifest", "message"), [(False, "not a run folder"), (True, "stage 'study' has not completed")]
)
def test_study_report_of_no_finished_study_is_one_line(
    manifest, message, tmp_path, capsys, monkeypatch
) -> None:
    from neuronmap.cli import main
    from neuronmap.rundir.run import RUN_FORMAT

    out = tmp_path / "o"
    out.mkdir()
    if manifest:  # a run folder whose study never finished
        (out / "run.json").write_text(json.dumps({"run_format": RUN_FORMAT, "stages": {}}))
    monkeypatch.setattr(sys, "argv", ["neuronmap", "study", "report", "--out", str(out)])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and "Traceback" not in err, err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--flip-mode", "both"], "--flip-mode"),
        (["--facts", "builtin:wiki"], "--facts"),
        (["--facts", "missing.json"], "missing.json"),
        (["--limit", "0"], "--limit"),
        (["--model", "tiny-gpt2", "--layers", "0,7"], "layer 7"),
        (["--workers", "0"], "--workers must be at least 1, got 0"),
    ],
)
def test_cli_errors_are_one_line(args, message, tmp_path, capsys, monkeypatch):
    """Bad input: one line on stderr and exit code 2, through ``main`` as the console script calls it."""
    from neuronmap.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["neuronmap", "study", "editability", "--out", "o", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def draw_figures(folder: Path) -> list[Path]:
    """Every study figure, PNG and SVG, on a small table with the three seed facts (run by a second process too)."""
    from neuronmap.study import report
    from neuronmap.study.stats import correlations

    rng = np.random.default_rng(0)
    n = 8
    table = pd.DataFrame(
        {
            "fact_id": range(n),
            "seed": ["Eiffel Tower", "White House", "California"] + [""] * (n - 3),
            "relation": ["landmark_city"] * n,
            "mlp_peak_layer": rng.integers(0, 4, n).astype(float),
            "best_layer": rng.integers(0, 4, n),
            "neurons_80": rng.uniform(1, 50, n),
            "flip_norm": rng.uniform(0.1, 4, n),
            "shape_class": ["narrow single-layer", "thick multi-layer"] * (n // 2),
            "live_index": [0, 1] * (n // 2),
        }
    )
    profiles = pd.DataFrame(
        [
            {"fact_id": f, "kind": k, "layer": la, "subject_index": i, "indirect": rng.normal()}
            for f in range(n)
            for k in ("mlp", "attn")
            for la in range(4)
            for i in range(2)
        ]
    )
    corr = correlations(table, ["neurons_80"], ["flip_norm"], n_boot=200)
    formats = ("png", "svg")
    paths = report.scatter_figures(table, corr, ["neurons_80"], ["flip_norm"], folder, formats)
    paths += report.layer_figure(table, folder, formats)
    paths += report.profile_figure(table, profiles, folder, formats)
    return paths + report.class_figure(table, folder, formats)


def test_report_figures_mark_the_seeds(tmp_path):
    folder = tmp_path / "figures"
    paths = draw_figures(folder)
    stems = ("scatter_neurons_80", "best_vs_peak_layer", "profiles", "flip_by_class")
    assert sorted(p.name for p in paths) == sorted(f"{s}.{f}" for s in stems for f in ("png", "svg"))
    svg = (folder / "scatter_neurons_80.svg").read_text()
    for seed in ("Eiffel Tower", "White House", "California"):
        assert seed in svg  # labelled next to its star


DRAW = "import sys; from pathlib import Path; from test_study_api import draw_figures; draw_figures(Path(sys.argv[1]))"


def test_report_figures_are_the_same_bytes_in_another_process(tmp_path):
    """No date in the SVG metadata and no hash-seeded ids: two processes with different hash seeds (and no
    SOURCE_DATE_EPOCH to pin matplotlib's clock) draw byte-identical PNG and SVG files."""
    drawn = []
    for hash_seed in (1, 2):
        env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
        path = os.pathsep.join(filter(None, [str(Path(__file__).parent), env.get("PYTHONPATH")]))
        env.update(PYTHONHASHSEED=str(hash_seed), PYTHONPATH=path)
        folder = tmp_path / f"hash-seed-{hash_seed}"
        subprocess.run([sys.executable, "-c", DRAW, str(folder)], env=env, check=True)
        drawn.append({p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()})
    assert len(drawn[0]) == 8 and drawn[0] == drawn[1]


def test_keep_rank_includes_facts_whose_true_target_ranks_above_the_new_one():
    """--keep rank: P(true) > P(new) and P(true) >= the floor, P being exp of the mean log-probability per
    target token; checked against a plain forward pass per fact."""
    import torch

    from neuronmap.models.loader import load_model
    from neuronmap.study.api import rank_check
    from neuronmap.study.facts import load_study_facts

    lm = load_model("tiny-gpt2", dtype="float64")
    facts = load_study_facts("builtin:facts", limit=8, seed=0)
    tok = lm.tokenizer

    def p(text: str, target: str) -> float:
        prompt, answer = tok(text)["input_ids"], tok(" " + target)["input_ids"]
        with torch.no_grad():
            logp = lm.model(input_ids=torch.tensor([prompt + answer])).logits[0].log_softmax(-1)
        picked = [float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(answer)]
        return float(np.exp(np.mean(picked)))

    outcomes = set()
    for floor in (0.0, 1e-4):
        clean = {f.fact_id: {"known": False, "p_true": 0.0} for f in facts}
        rank_check(lm, facts, clean, (), floor)
        for f in facts:
            pt, pn = p(f.text, f.target_true), p(f.text, f.target_new)
            assert clean[f.fact_id]["p_true_token"] == pytest.approx(pt, rel=1e-9)
            assert clean[f.fact_id]["p_new_token"] == pytest.approx(pn, rel=1e-9)
            assert clean[f.fact_id]["ranked"] == (pt > pn and pt >= floor)
            outcomes.add((floor, clean[f.fact_id]["ranked"]))
    assert {(0.0, True), (0.0, False)} <= outcomes  # facts on both sides of the rule


def test_keep_rank_with_an_impossible_floor_studies_nothing(tmp_path, hparams_file):
    from neuronmap.errors import NeuronmapError
    from neuronmap.models.loader import load_model
    from neuronmap.study import study_editability

    lm = load_model("tiny-gpt2", dtype="float64")
    with pytest.raises(NeuronmapError, match="the study needs at least 2"):
        study_editability(lm, "builtin:facts", tmp_path / "s", limit=4, hparams=str(hparams_file), keep="rank",
                          min_p=1.0, progress=False, formats=())  # fmt: skip
    with pytest.raises(NeuronmapError, match="--min-p must be within"):
        study_editability(lm, "builtin:facts", tmp_path / "s", keep="rank", min_p=2.0, progress=False)
    with pytest.raises(NeuronmapError, match="--keep takes known, rank, all"):
        study_editability(lm, "builtin:facts", tmp_path / "s", keep="top", progress=False)


class Stopped(Exception):
    pass


def test_a_stopped_study_resumes_from_the_facts_done(tmp_path, hparams_file, monkeypatch):
    """Stopped during the edits of its third fact, the study keeps the traces and edits done; run again it
    traces and edits only the facts not done and writes an uninterrupted run's tables. Another setting starts
    again."""
    from neuronmap.models.loader import load_model
    from neuronmap.study import editability, profiles, study_editability

    lm = load_model("tiny-gpt2", dtype="float64")
    options = {"limit": 4, "hparams": str(hparams_file), "keep": "all", "n_boot": 100, "flip_iters": 2,
               "samples": 2, "formats": (), "progress": False}  # fmt: skip
    study_editability(lm, "builtin:facts", tmp_path / "whole", **options)
    calls: dict[str, list[int]] = {"trace": [], "edit": []}
    real_trace, real_edit = profiles._trace_one, editability.edit_fact

    def trace(lm, f, *args):
        calls["trace"].append(f.fact_id)
        return real_trace(lm, f, *args)

    def edit(lm, f, *args):
        calls["edit"].append(f.fact_id)
        if len(calls["edit"]) == 3 and not calls.get("stopped"):
            calls["stopped"] = [1]
            raise Stopped
        return real_edit(lm, f, *args)

    monkeypatch.setattr(profiles, "_trace_one", trace)
    monkeypatch.setattr(editability, "edit_fact", edit)
    out = tmp_path / "stopped"
    with pytest.raises(Stopped):
        study_editability(lm, "builtin:facts", out, **options)
    assert json.loads((out / "run.json").read_text())["stages"]["study"]["status"] == "running"
    facts = calls["trace"][:]
    assert len(facts) == 4 and len(list((out / "parts").glob("edits-*.parquet"))) == 2
    calls["trace"].clear(), calls["edit"].clear()
    study_editability(lm, "builtin:facts", out, **options)
    assert calls == {"trace": [], "edit": facts[2:], "stopped": [1]}
    assert not (out / "parts").exists()
    for table in ("profiles", "sweep", "facts", "correlations"):
        assert (out / f"{table}.parquet").read_bytes() == (
            tmp_path / "whole" / f"{table}.parquet"
        ).read_bytes()
    # the same folder with another number of noise samples keeps nothing: every fact is traced again
    calls.pop("stopped")
    calls["trace"], calls["edit"] = [], [0, 0]  # the next edit is the third call: stop there
    with pytest.raises(Stopped):
        study_editability(lm, "builtin:facts", out, **{**options, "samples": 3})
    assert calls["trace"] == facts and len(list((out / "parts").glob("edits-*.parquet"))) == 0


def test_workers_edit_the_facts_as_one_process_does(tmp_path, hparams_file):
    """Two worker processes, each loading the model by its name, give the tables of one process byte for byte
    (with as many threads per process: the sums of several threads round otherwise); a model whose name loads other weights is refused with a message, before any fact is written."""
    from neuronmap.models.loader import load_model
    from neuronmap.study import study_editability

    lm = load_model("tiny-gpt2", dtype="float64")
    options = {"limit": 4, "hparams": str(hparams_file), "keep": "all", "n_boot": 100, "flip_iters": 2,
               "samples": 2, "formats": (), "progress": False}  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' share: one thread each, as the single process has here
    try:
        study_editability(lm, "builtin:facts", tmp_path / "one", **options)
        study_editability(lm, "builtin:facts", tmp_path / "two", workers=2, **options)
    finally:
        torch.set_num_threads(threads)
    for table in ("sweep", "facts", "correlations"):
        assert (tmp_path / "two" / f"{table}.parquet").read_bytes() == (
            tmp_path / "one" / f"{table}.parquet"
        ).read_bytes()
    # a model whose name loads other weights: the worker refuses it before writing anything
    from neuronmap.edit.hparams import RomeHparams
    from neuronmap.progress import Bar
    from neuronmap.study import editability, parallel
    from neuronmap.study.facts import load_study_facts

    lm.weights_hash = "other"
    plan = editability.SweepPlan(
        editability.EditSetup(RomeHparams(layer=0), [""], {}, []), (0,), 0, ("scale", 1)
    )
    with pytest.raises(
        NeuronmapError, match="--workers: the model 'tiny-gpt2' loaded in a worker has other weights"
    ):
        parallel.edit_in_workers(lm, load_study_facts(limit=1), plan, tmp_path / "parts", 2, Bar())
    assert not (tmp_path / "parts").exists() or not list((tmp_path / "parts").iterdir())
