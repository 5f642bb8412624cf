"""The map stage on Ray: the projection's row blocks as Ray tasks give the local map (local Ray, 2 CPUs)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import scipy.sparse as sp
from typer.testing import CliRunner

from neuronmap.cli import app
from neuronmap.errors import NeuronmapError
from neuronmap.graph import map_run
from neuronmap.graph import projection as proj
from neuronmap.graph.projection import gram_factor, gram_graph, gram_rows

FAST = {"null_samples": 3, "stability_seeds": 2}


class InProcess:
    """A block runner that computes each range here: checks the split into ranges without Ray."""

    def __init__(self, parts: int) -> None:
        self.n_parts, self.seen = parts, []

    def parts(self, blocks):
        return self.n_parts

    def gram_rows(self, blocks, ranges, neighbors, threshold):
        self.seen.append(ranges)
        return [gram_rows(blocks, a, b, neighbors, threshold) for a, b in ranges]


def _hubby(seed: int = 0, n: int = 300, tokens: int = 400) -> sp.csr_array:
    """A bipartite matrix with hub tokens (dense path) and rare ones (sparse path)."""
    rng = np.random.default_rng(seed)
    matrix = sp.random_array((n, tokens), density=0.02, random_state=rng, format="lil")
    matrix[:, :4] = rng.uniform(0.1, 1.0, (n, 4))  # hubs: on every neuron
    return sp.csr_array(matrix)


@pytest.mark.parametrize("parts", [1, 3, 7, 100])
@pytest.mark.parametrize("neighbors,threshold", [(8, None), (None, 0.05), (16, 0.01)])
def test_ranges_of_blocks_give_the_local_graph(monkeypatch, parts, neighbors, threshold):
    monkeypatch.setattr(proj, "BLOCK_CELLS", 300 * 32)  # 32 rows a block: several blocks
    factor = gram_factor(_hubby(), "weighted")
    local = gram_graph(factor, neighbors, threshold)
    runner = InProcess(parts)
    remote = gram_graph(factor, neighbors, threshold, runner)
    ranges = runner.seen[0]
    assert ranges[0][0] == 0 and ranges[-1][1] == 300 and 1 <= len(ranges) <= min(parts, 10)
    assert all(a[1] == b[0] for a, b in zip(ranges[:-1], ranges[1:], strict=True))
    assert (local != remote).nnz == 0 and local.nnz > 0


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def test_map_on_ray_equals_local(local_ray, planted_run, monkeypatch):
    """Several row blocks per projection (unit and nulls) as Ray tasks: the same files as the local map."""
    monkeypatch.setattr(proj, "BLOCK_CELLS", 120 * 16)
    run, _ = planted_run("local")
    twin, _ = planted_run("ray")
    local = map_run(run, **FAST)
    on_ray = map_run(twin, backend="ray", workers=2, **FAST)
    assert not on_ray.reused
    files = sorted(p.name for p in (run / "graph").iterdir())
    assert files == sorted(p.name for p in (twin / "graph").iterdir())
    for name in files:
        assert (run / "graph" / name).read_bytes() == (twin / "graph" / name).read_bytes(), name
    assert local.summary == on_ray.summary
    # the backend is not a parameter of the map: the local map is reused
    assert map_run(twin, **FAST).reused


def test_map_command_on_ray(local_ray, planted_run):
    run, _ = planted_run()
    result = CliRunner().invoke(
        app,
        [
            "map",
            str(run),
            "--backend",
            "ray",
            "--workers",
            "2",
            "--null-samples",
            "2",
            "--stability-seeds",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "clusters" in result.output


def test_without_ray_the_error_names_the_extra(planted_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    run, _ = planted_run()
    with pytest.raises(NeuronmapError, match=r"neuronmap\[ray\]"):
        map_run(run, backend="ray", **FAST)
    assert not (run / "graph").exists()
    result = CliRunner().invoke(app, ["map", str(run), "--backend", "ray"])
    assert isinstance(result.exception, NeuronmapError) and "neuronmap[ray]" in str(result.exception)


def test_unknown_backend_is_a_clear_error(planted_run):
    run, _ = planted_run()
    with pytest.raises(NeuronmapError, match="--backend 'spark'"):
        map_run(run, backend="spark", **FAST)
