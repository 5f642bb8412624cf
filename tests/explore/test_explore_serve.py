"""`explore --serve`: 127.0.0.1 unless told otherwise, the run's own files only, its address stated."""

from __future__ import annotations

import http.client
import os
import re
import subprocess
import sys
import threading

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
