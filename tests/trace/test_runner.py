"""The trace stage end to end on tiny models: tables, filters, resume after a kill, determinism, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from neuronmap.errors import NeuronmapError
from neuronmap.rundir import RunDir
from neuronmap.trace import runner
from neuronmap.trace.runner import TraceConfig, trace_run

FACTS = [
    {
        "text": "The Eiffel Tower is located in the city of",
        "target": "Paris",
        "subject": "Eiffel Tower",
        "relation": "city",
    },
    {"text": "Tokyo is the capital of", "target": "Japan", "subject": "Tokyo", "relation": "capital"},
    {"text": "The Colosseum is in", "target": " Rome", "subject": "Colosseum", "relation": "city"},
    {"text": "Water is made of hydrogen and", "target": "oxygen", "subject": "Water", "relation": "chem"},
    {"text": "The opposite of hot is", "target": "cold", "subject": "hot", "relation": "antonym"},
]


@pytest.fixture
def facts_file(tmp_path: Path) -> Path:
    path = tmp_path / "facts.jsonl"
    path.write_text("".join(json.dumps(f) + "\n" for f in FACTS))
    return path


def run_trace(out, contexts, **kw):
    kw.setdefault("model", "tiny-gpt2")
    kw.setdefault("progress", False)
    return trace_run(out=out, contexts=str(contexts), **kw)


def test_tables_follow_the_contract(tmp_path, facts_file):
    res = run_trace(tmp_path / "run", facts_file, top_k=7)
    ctx, scores = res.contexts, res.scores
    assert list(ctx["context_id"]) == [0, 1, 2, 3, 4]
    assert {
        "text",
        "target",
        "target_ids",
        "subject",
        "p_target",
        "input_ids",
        "tokens",
        "target_tokens",
        "position",
        "relation",
    } <= set(ctx.columns)
    assert list(scores.columns) == ["context_id", "layer", "neuron", "score"]
    assert scores.dtypes.to_dict() == {
        "context_id": np.int64,
        "layer": np.int32,
        "neuron": np.int32,
        "score": np.float32,
    }
    assert (scores.groupby("context_id").size() == 7).all()
    # Top-k by |score|, in descending order within each context.
    for _, group in scores.groupby("context_id"):
        mags = group["score"].abs().to_numpy()
        assert (np.diff(mags) <= 0).all()
    # A target that already starts with a space is used as written; others get one.
    tok = ctx.set_index("context_id")["target_tokens"]
    assert tok[0][0] == " Paris" and tok[2][0] == " Rome"
    row = ctx.iloc[0]
    assert row["tokens"][row["position"]] == " of"
    assert row["input_ids"][: row["position"] + 1][-1] != row["target_ids"][0]
    manifest = RunDir(tmp_path / "run").manifest()
    assert manifest["stages"]["trace"]["status"] == "complete"
    assert manifest["model"]["d_mlp"] == 64 and manifest["model"]["n_layers"] == 2
    assert not (tmp_path / "run" / "parts").exists()


def test_scores_are_the_method_top_k(tmp_path, facts_file, tiny_models):
    """The stored rows are exactly the top-k of the method's dense scores."""
    from neuronmap.trace.batch import collate, encode
    from neuronmap.trace.methods import attribution

    lm = tiny_models("tiny-gpt2", "float32")
    res = run_trace(tmp_path / "run", facts_file, top_k=5, loaded=lm)
    encoded = [encode(lm.tokenizer, f["text"], f["target"], f["subject"]) for f in FACTS]
    dense = attribution(lm, collate(encoded, lm.tokenizer.pad_token_id), [0, 1]).scores
    for cid, group in res.scores.groupby("context_id"):
        flat = dense[cid].reshape(-1)
        top = set(flat.abs().topk(5).indices.tolist())
        assert set((group["layer"] * 64 + group["neuron"]).tolist()) == top
        np.testing.assert_allclose(
            group["score"], flat[group["layer"].to_numpy() * 64 + group["neuron"].to_numpy()], rtol=1e-5
        )


def test_threshold_and_layers(tmp_path, facts_file):
    res = run_trace(tmp_path / "run", facts_file, top_k=None, threshold=0.05, layers=[-1])
    assert (res.scores["score"].abs() >= 0.05).all()
    assert set(res.scores["layer"]) == {1}
    with pytest.raises(NeuronmapError, match="out of range"):
        run_trace(tmp_path / "bad", facts_file, layers=[5])


def test_keep_known_with_nothing_known_is_an_error(tmp_path, facts_file):
    # A random model predicts none of these targets: a clear error and nothing left behind.
    with pytest.raises(NeuronmapError, match="none of the 5 contexts was kept"):
        run_trace(tmp_path / "run", facts_file, keep="known", top_k=3)
    assert not (tmp_path / "run").exists()


def test_keep_known_keeps_predicted_targets(tmp_path, tiny_models):
    """Targets set to the model's own top prediction are 'known'; others are dropped and listed."""
    lm = tiny_models("tiny-gpt2", "float32")
    path = tmp_path / "mixed.txt"
    path.write_text("The capital of France is\nOnce upon a time\nThe capital of France is\tzebra\n")
    res = run_trace(tmp_path / "run", path, keep="known", loaded=lm, top_k=3)
    assert list(res.contexts["context_id"]) == [0, 1]
    dropped = pd.read_parquet(tmp_path / "run" / "contexts_dropped.parquet")
    assert list(dropped["context_id"]) == [2] and not dropped["known"].any()
    assert res.summary["contexts_kept"] == 2 and res.summary["contexts_dropped"] == 1
    assert set(res.scores["context_id"]) == {0, 1}


def test_rerun_is_a_no_op_and_changed_params_refused(tmp_path, facts_file):
    out = tmp_path / "run"
    run_trace(out, facts_file, top_k=4)
    before = (out / "scores.parquet").stat().st_mtime_ns
    again = run_trace(out, facts_file, top_k=4)
    assert again.skipped and (out / "scores.parquet").stat().st_mtime_ns == before
    with pytest.raises(NeuronmapError, match="top_k: 4 -> 5"):
        run_trace(out, facts_file, top_k=5)
    forced = run_trace(out, facts_file, top_k=5, force=True)
    assert not forced.skipped and (forced.scores.groupby("context_id").size() == 5).all()


def test_ig_metric_and_rule_are_trace_parameters(tmp_path, facts_file):
    out = tmp_path / "run"
    kw = {"method": "integrated-gradients", "steps": 2, "top_k": 4}
    run_trace(out, facts_file, **kw)
    with pytest.raises(NeuronmapError, match="ig_metric: 'logprob' -> 'prob'"):
        run_trace(out, facts_file, ig_metric="prob", **kw)
    with pytest.raises(NeuronmapError, match="ig_rule: 'midpoint' -> 'linspace'"):
        run_trace(out, facts_file, ig_rule="linspace", **kw)
    run_trace(out, facts_file, ig_metric="prob", ig_rule="linspace", force=True, **kw)
    assert run_trace(out, facts_file, ig_metric="prob", ig_rule="linspace", **kw).skipped


def test_a_run_made_before_a_parameter_existed_is_still_reused(tmp_path, facts_file):
    out = tmp_path / "run"
    run_trace(out, facts_file, top_k=4)
    manifest = json.loads((out / "run.json").read_text())
    for key in ("ig_metric", "ig_rule"):  # parameters added later: absent from older runs
        del manifest["stages"]["trace"]["params"][key]
    (out / "run.json").write_text(json.dumps(manifest))
    assert run_trace(out, facts_file, top_k=4).skipped  # their defaults are what the older run did
    with pytest.raises(NeuronmapError, match="ig_metric: 'logprob' -> 'prob'"):
        run_trace(out, facts_file, top_k=4, ig_metric="prob")


def test_another_run_format_is_refused_another_version_of_the_same_format_reused(tmp_path, facts_file):
    out = tmp_path / "run"
    run_trace(out, facts_file)
    manifest = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**manifest, "neuronmap_version": "9.9.9"}))
    assert run_trace(out, facts_file).skipped  # the same tables, whichever version wrote them
    (out / "run.json").write_text(json.dumps({**manifest, "neuronmap_version": "0.0.1", "run_format": 0}))
    with pytest.raises(NeuronmapError, match="made by neuronmap 0.0.1 in run format 0"):
        run_trace(out, facts_file)


def test_a_run_written_before_run_formats_is_reused_and_forced_clean(tmp_path, facts_file):
    """run.json as 0.1.0 wrote it: no run_format, trace time local in timing, later stages without outputs."""
    out = tmp_path / "run"
    run_trace(out, facts_file)
    manifest = json.loads((out / "run.json").read_text())
    del manifest["run_format"]
    trace = manifest["stages"]["trace"]
    del trace["outputs"]
    trace["timing"]["finished_at"] = trace.pop("finished_at")[:19]
    manifest["stages"]["group"] = {"status": "complete", "groupings": {}}
    (out / "run.json").write_text(json.dumps(manifest))
    for name in ("graph", "figures"):
        (out / name).mkdir()
    (out / "explorer.html").write_text("old page")
    again = run_trace(out, facts_file)
    assert again.skipped and "finished_at" not in again.summary
    run_trace(out, facts_file, force=True)
    assert {p.name for p in out.iterdir()} == {
        "run.json",
        "contexts.parquet",
        "contexts_dropped.parquet",
        "scores.parquet",
    }
    assert set(RunDir(out).manifest()["stages"]) == {"trace"}


def test_deterministic_tables(tmp_path, facts_file):
    for name in ("a", "b"):
        run_trace(tmp_path / name, facts_file, method="causal", samples=2, candidates=20)
    for table in ("contexts.parquet", "scores.parquet"):
        assert (tmp_path / "a" / table).read_bytes() == (tmp_path / "b" / table).read_bytes()


def test_resume_after_failure_equals_uninterrupted(tmp_path, facts_file, monkeypatch):
    run_trace(tmp_path / "ref", facts_file, part_size=2, batch_size=1)
    calls = {"n": 0}
    original = runner._score_batch

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # as if killed in the middle of the second part
        return original(*args, **kwargs)

    monkeypatch.setattr(runner, "_score_batch", failing)
    with pytest.raises(KeyboardInterrupt):
        run_trace(tmp_path / "run", facts_file, part_size=2, batch_size=1)
    parts = sorted(p.name for p in (tmp_path / "run" / "parts").iterdir())
    assert parts == ["contexts-00000.parquet", "scores-00000.parquet"]
    assert RunDir(tmp_path / "run").stage("trace")["status"] == "running"
    monkeypatch.setattr(runner, "_score_batch", original)
    calls["n"] = 0
    res = run_trace(tmp_path / "run", facts_file, part_size=2, batch_size=1)
    assert res.summary["contexts_total"] == 5
    for table in ("contexts.parquet", "scores.parquet"):
        assert (tmp_path / "ref" / table).read_bytes() == (tmp_path / "run" / table).read_bytes()


KILL_SCRIPT = """
import sys
from neuronmap.trace.runner import trace_run
trace_run(out=sys.argv[1], contexts=sys.argv[2], model="tiny-gpt2", part_size=1, batch_size=1, progress=False,
      method="integrated-gradients", steps=4)
"""


def test_resume_after_kill_9(tmp_path, facts_file):
    contexts = tmp_path / "many.jsonl"
    contexts.write_text("".join(json.dumps(FACTS[i % 5]) + "\n" for i in range(40)))
    ref = tmp_path / "ref"
    subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(ref), str(contexts)], check=True)
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SCRIPT, str(out), str(contexts)])
    deadline = time.time() + 120
    while not (out / "parts" / "scores-00003.parquet").exists() and time.time() < deadline:
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert RunDir(out).stage("trace")["status"] == "running"
    assert not (out / "scores.parquet").exists()
    subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(out), str(contexts)], check=True)
    for table in ("contexts.parquet", "scores.parquet"):
        assert (ref / table).read_bytes() == (out / table).read_bytes()


def test_lock_refuses_a_second_writer(tmp_path, facts_file):
    out = tmp_path / "run"
    with RunDir(out).lock(), pytest.raises(NeuronmapError, match="another neuronmap process"):
        # A lock held by a live process (our parent stands in for another process).
        (out / ".lock").write_text(f"{os.getppid()} 0\n")
        run_trace(out, facts_file)


def test_stale_lock_is_taken_over(tmp_path, facts_file):
    out = tmp_path / "run"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (out / ".lock").write_text(f"{dead.pid} 0\n")
    assert run_trace(out, facts_file).summary["contexts_total"] == 5
    assert not (out / ".lock").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "nope"}, "unknown method"),
        ({"top_k": None}, "give --top-k or --threshold"),
        ({"top_k": 0}, "--top-k must be at least 1"),
        ({"positions": "subject"}, "--positions for attribution"),
        ({"per_position": True}, "--per-position needs --positions all"),
        (
            {"method": "ablation", "per_position": True, "positions": "all"},
            "attribution and integrated-gradients",
        ),
        ({"threshold": float("nan")}, "--threshold"),
        ({"ablate": "half"}, "--ablate"),
        ({"ig_metric": "p"}, "--ig-metric"),
        ({"ig_rule": "left"}, "--ig-rule"),
    ],
)
def test_bad_parameters(tmp_path, facts_file, kwargs, message):
    with pytest.raises(NeuronmapError, match=message):
        run_trace(tmp_path / "run", facts_file, **kwargs)
    assert not (tmp_path / "run" / "run.json").exists()


def test_causal_needs_subjects(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"text": "The sky is", "target": "blue"}) + "\n")
    with pytest.raises(NeuronmapError, match="no subject"):
        run_trace(tmp_path / "run", path, method="causal")


def test_per_position_scores(tmp_path, facts_file):
    res = run_trace(tmp_path / "run", facts_file, positions="all", per_position=True, top_k=10)
    assert list(res.scores.columns) == ["context_id", "position", "layer", "neuron", "score"]
    lengths = res.contexts.set_index("context_id")["input_ids"].map(len)
    assert (res.scores["position"] < res.scores["context_id"].map(lengths)).all()


def test_mean_ablation_and_config_object(tmp_path, facts_file):
    config = TraceConfig(
        model="tiny-llama",
        contexts=str(facts_file),
        method="ablation",
        ablate="mean",
        candidates=16,
        top_k=16,
    )
    res = trace_run(config, tmp_path / "run", progress=False)
    assert (res.scores.groupby("context_id").size() == 16).all()
    assert "attribution" in res.scores.columns


def test_ray_backend_equals_local(tmp_path, facts_file):
    """Two Ray actors on a local cluster started for the test (2 CPUs) give the local backend's tables."""
    local = run_trace(tmp_path / "local", facts_file, part_size=2, top_k=10, method="ablation", candidates=30)
    on_ray = run_trace(tmp_path / "ray", facts_file, part_size=2, top_k=10, method="ablation", candidates=30,
                       backend="ray", workers=2)  # fmt: skip
    pd.testing.assert_frame_equal(local.contexts, on_ray.contexts, check_exact=False, rtol=1e-5)
    a, b = local.scores, on_ray.scores
    assert a[["context_id", "layer", "neuron"]].equals(b[["context_id", "layer", "neuron"]])
    np.testing.assert_allclose(a["score"], b["score"], rtol=1e-4, atol=1e-6)


def test_an_absent_ray_head_is_named_in_seconds_not_minutes():
    """ray.init retries an address where nothing listens for minutes; connect probes it first."""
    import socket

    from neuronmap.raytools import connect, unreachable

    class NoRay:
        def is_initialized(self) -> bool:
            return False

        def init(self, **kwargs: object) -> None:
            raise AssertionError("ray.init must not be reached for an address where nothing listens")

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(NeuronmapError, match=f"could not reach Ray at 127.0.0.1:{port}"):
        connect(NoRay(), f"127.0.0.1:{port}", 2)
    assert time.monotonic() - start < 5
    with socket.socket() as server:  # a listening port passes the probe (ray:// form too)
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert unreachable(f"127.0.0.1:{server.getsockname()[1]}") is None
        assert unreachable(f"ray://127.0.0.1:{server.getsockname()[1]}") is None
    assert unreachable("auto") is None
