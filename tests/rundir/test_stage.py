"""The run directory's ground floor: stage() bookkeeping, the run format, records written the old way."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from neuronmap import __version__
from neuronmap.errors import NeuronmapError
from neuronmap.rundir import RUN_FORMAT, RunDir, record_views, stage


def test_a_stage_records_params_outputs_and_utc_time(tmp_path):
    run = RunDir(tmp_path / "run")
    with stage(run, "demo", {"k": (1, 2), "name": "x"}) as st:
        assert st.previous is None and not st.complete
        (run.path / "table.parquet").write_bytes(b"")
        st.wrote("table.parquet", run.path / "sub" / "file.json")
        st.finish(summary={"rows": 0})
    data = run.manifest()
    record = data["stages"]["demo"]
    assert data["run_format"] == RUN_FORMAT and data["neuronmap_version"] == __version__
    assert record["status"] == "complete" and record["params"] == {"k": [1, 2], "name": "x"}
    assert record["outputs"] == ["sub/file.json", "table.parquet"] and record["summary"] == {"rows": 0}
    assert datetime.fromisoformat(record["finished_at"]).utcoffset().total_seconds() == 0
    assert not (run.path / ".lock").exists()


def test_changes_name_each_parameter_and_take_defaults_for_parameters_added_later(tmp_path):
    run = RunDir(tmp_path)
    with stage(run, "demo", {"a": 1, "b": 2}) as st:
        st.finish()
    run.set_stage("demo", params={"a": 1})  # a record from before "b" existed
    with stage(run, "demo", {"a": 3, "b": 2}) as st:
        assert st.complete
        assert st.changes({"b": 2}) == ["a: 1 -> 3"]
        assert st.changes() == ["a: 1 -> 3", "b: None -> 2"]


def test_a_failed_stage_is_recorded_unless_it_resumes_or_a_user_error_left_the_previous_outputs(tmp_path):
    run = RunDir(tmp_path)
    with pytest.raises(RuntimeError), stage(run, "demo", {"a": 1}) as st:
        st.start()
        raise RuntimeError("broken")
    assert run.stage("demo")["status"] == "failed" and run.stage("demo")["error"] == "broken"
    with stage(run, "demo", {"a": 1}) as st:
        st.start()
        st.finish()
    complete = run.stage("demo")
    with pytest.raises(NeuronmapError), stage(run, "demo", {"a": 2}) as st:
        st.start()
        raise NeuronmapError("the disk is full")
    assert run.stage("demo") == complete
    with pytest.raises(KeyboardInterrupt), stage(run, "resumable", {"a": 1}, resumable=True) as st:
        st.start()
        raise KeyboardInterrupt
    assert run.stage("resumable")["status"] == "running"


def test_outputs_must_lie_inside_the_run(tmp_path):
    with stage(RunDir(tmp_path / "run"), "demo") as st, pytest.raises(ValueError):
        st.wrote(tmp_path / "elsewhere.txt")
    with stage(RunDir(tmp_path / "run"), "demo") as st, pytest.raises(ValueError):
        st.wrote(tmp_path / "run")  # the run itself is never an output: a new trace would remove it


def test_views_written_into_the_run_are_recorded_elsewhere_not(tmp_path):
    run = RunDir(tmp_path / "run")
    record_views(run, "page", [tmp_path / "page.html"])
    assert not run.exists()
    record_views(run, "page", [run.path / "explorer.html"])
    assert run.stage("page")["outputs"] == ["explorer.html"]


def test_clear_removes_what_each_stage_recorded_and_nothing_else(tmp_path):
    run = RunDir(tmp_path)
    for name in ("a.parquet", "b.parquet", "mine.txt"):
        (tmp_path / name).write_text(name)
    (tmp_path / "folder").mkdir()
    with stage(run, "one") as st:
        st.wrote("a.parquet", "folder")
        st.finish()
    with stage(run, "two") as st:
        st.wrote("b.parquet")
        st.finish()
    run.clear()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.txt"]


def test_a_manifest_written_the_old_way_is_read(tmp_path):
    """As 0.1.0 wrote run.json: no run_format, ``parameters`` in the edit and study stages."""
    old = {
        "neuronmap_version": "0.1.0",
        "stages": {"study": {"status": "complete", "parameters": {"seed": 0}, "summary": {}}},
    }
    (tmp_path / "run.json").write_text(json.dumps(old))
    run = RunDir(tmp_path)
    assert run.require_stage("study")["params"] == {"seed": 0}
    with stage(run, "study", {"seed": 0}) as st:
        assert st.complete and not st.changes()
    run.set_stage("study", status="complete")
    assert run.manifest()["run_format"] == RUN_FORMAT


def test_a_version_is_accepted_by_its_run_format(tmp_path):
    run = RunDir(tmp_path)
    run.set_stage("trace", status="complete")
    data = run.manifest()
    (tmp_path / "run.json").write_text(json.dumps({**data, "neuronmap_version": "7.0.0"}))
    assert run.require_stage("trace")["status"] == "complete"
    (tmp_path / "run.json").write_text(json.dumps({**data, "run_format": RUN_FORMAT + 1}))
    with pytest.raises(NeuronmapError, match=f"in run format {RUN_FORMAT + 1}; neuronmap .* reads format"):
        run.require_stage("trace")
    del data["run_format"]
    (tmp_path / "run.json").write_text(json.dumps({**data, "neuronmap_version": "0.0.1"}))
    with pytest.raises(NeuronmapError, match=r"made by neuronmap 0.0.1 in run format \(unknown\)"):
        run.require_stage("trace")
