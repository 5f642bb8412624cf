"""`explore --serve`: 127.0.0.1 unless told otherwise, the run's own files only, its address stated."""

from __future__ import annotations

import http.client
import os
import random
import re
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from urllib.parse import quote

import psutil
import pytest

from neuronmap.explore.page import write_page
from neuronmap.explore.serve import address, make_server

TRAVERSALS = [
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
    "/..%2f..%2f..%2fetc%2fpasswd",
    "/graph/../../../etc/passwd",
    "/graph/%2e%2e/%2e%2e/etc/passwd",
    "/%252e%252e/%252e%252e/etc/passwd",
    "//etc/passwd",
    "/%2fetc%2fpasswd",
    "/..\\..\\etc\\passwd",
    "/%5c..%5c..%5cetc%5cpasswd",
    "/etc/passwd%00.html",
    "/.lock",
    "/outside",
    "/graph",
    "/nothing-here.html",
]


def get(host: str, port: int, target: str, method: str = "GET") -> tuple[int, bytes]:
    """One raw request: http.client sends the target exactly as written (no normalisation)."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.putrequest(method, target, skip_accept_encoding=True)
        conn.endheaders()
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@pytest.fixture
def served(run_copy, tmp_path):
    write_page(run_copy)
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", run_copy / "outside")  # a link out of the run is not the run's file
    server = make_server(run_copy, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_serves_the_page_and_the_runs_files_on_localhost(served):
    host, port = served.server_address[:2]
    assert host == "127.0.0.1" and address(served) == f"http://127.0.0.1:{port}/"
    status, body = get(host, port, "/")
    assert status == 200 and body.startswith(b"<!DOCTYPE html>")
    assert get(host, port, "/graph/summary.json")[0] == 200
    assert get(host, port, "/explorer.html", "HEAD") == (200, b"")
    assert get(host, port, "/explorer.html", "POST")[0] == 501


@pytest.mark.parametrize("target", TRAVERSALS)
def test_anything_else_is_404(served, target):
    status, body = get(*served.server_address[:2], target)
    assert status == 404 and b"root:" not in body and b"secret" not in body


def test_cli_serve_states_its_address(run_copy):
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from neuronmap.cli import main; main()",
            "explore",
            str(run_copy),
            "--serve",
            "--port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = ""
        while "serving" not in line:
            line = proc.stdout.readline()
            assert line, proc.stderr.read()
        found = re.search(r"http://([\d.]+):(\d+)/", line)
        assert found and found[1] == "127.0.0.1"
        assert get("127.0.0.1", int(found[2]), "/")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_binds_the_host_it_is_given(run_copy):
    server = make_server(run_copy, host="127.0.0.2", port=0)
    try:
        assert server.server_address[0] == "127.0.0.2" and address(server).startswith("http://127.0.0.2:")
    finally:
        server.server_close()


# ---- under load ---------------------------------------------------------------------------------------------
LOAD_REQUESTS = 1000
LOAD_CLIENTS = 50
WARMUP_REQUESTS = 200
LOAD_DEADLINE_S = 60.0  # for the whole batch; a hung or refused connection fails the test long before
RSS_MARGIN = 8 << 20  # bytes the server may grow by from after the warm-up to after the load


def _load_targets(run: Path, secret: Path) -> tuple[dict[str, bytes], list[str]]:
    """The run's servable files (target -> bytes) and the targets that must get 404: traversals out of the run
    to ``secret`` (plain, percent-encoded, double-encoded, with encoded slashes, absolute, by a symbolic link),
    hidden files and missing files."""
    files = {"/": (run / "explorer.html").read_bytes()}
    for path in sorted(run.rglob("*")):
        rel = path.relative_to(run).as_posix()
        if path.is_file() and not path.is_symlink() and not any(p.startswith(".") for p in rel.split("/")):
            files["/" + quote(rel)] = path.read_bytes()
    name = secret.name
    refused = [
        f"/../{name}",
        f"/graph/../../{name}",
        f"/%2e%2e/{name}",
        f"/%2E%2E%2F{name}",
        f"/graph%2f..%2f..%2f{name}",
        f"/%252e%252e/{name}",
        f"/..%5c{name}",
        str(secret),
        "/" + str(secret),
        "/" + quote(str(secret), safe=""),
        f"/{name}",
        "/outside",
        "/.lock",
        "/graph/.hidden",
        "/missing.html",
        "/graph/missing.parquet",
        "/graph/summary.json%00",
    ]
    return files, refused


def _fetch(port: int, target: str) -> tuple[str, int, bytes]:
    return (target, *get("127.0.0.1", port, target))


def _batch(port: int, targets: list[str]) -> list[tuple[str, int, bytes]]:
    """Every target fetched once by LOAD_CLIENTS concurrent clients; all answers, or the test fails."""
    pool = ThreadPoolExecutor(LOAD_CLIENTS)
    try:
        futures = [pool.submit(_fetch, port, t) for t in targets]
        done, pending = wait(futures, timeout=LOAD_DEADLINE_S)
        assert not pending, f"{len(pending)} of {len(targets)} requests unanswered after {LOAD_DEADLINE_S} s"
        return [f.result() for f in done]  # a connection error or timeout raises here
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def test_serve_under_load_answers_every_request_and_stays_flat(run_copy, tmp_path):
    """1,000 requests from 50 concurrent clients to the CLI's server: each one answered, the run's files with
    their bytes, everything else 404 without a byte of the file planted beside the run, and the server's memory
    flat between a warm-up batch and the load."""
    secret = tmp_path / "secret.txt"
    secret.write_text("not-for-the-web " * 4)
    os.symlink(secret, run_copy / "outside")
    (run_copy / "graph" / ".hidden").write_text(secret.read_text())
    errors = tmp_path / "serve.err"  # a file, not a pipe: a full pipe would stall the server
    with errors.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "neuronmap", "explore", str(run_copy), "--serve", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        line = ""
        while "serving" not in line:
            line = proc.stdout.readline()
            assert line, errors.read_text()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/", line)[1])
        files, refused = _load_targets(run_copy, secret)
        rng = random.Random(0)
        targets = [*files, *refused]
        warmup = [rng.choice(targets) for _ in range(WARMUP_REQUESTS)]
        load = [rng.choice(targets) for _ in range(LOAD_REQUESTS)]
        server = psutil.Process(proc.pid)

        _batch(port, warmup)
        rss_warm = server.memory_info().rss
        answers = _batch(port, load)
        rss_loaded = server.memory_info().rss

        assert len(answers) == LOAD_REQUESTS
        leaked = secret.read_bytes()
        for target, status, body in answers:
            assert leaked not in body, target
            if target in files:
                assert (status, body) == (200, files[target]), target
            else:
                assert status == 404, target
        assert {status for _, status, _ in answers} == {200, 404}
        assert rss_loaded - rss_warm < RSS_MARGIN, (rss_warm, rss_loaded)
        assert proc.poll() is None and not errors.read_text(), errors.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
