"""``neuronmap explore RUN --serve``: a small read-only HTTP server for one run directory.

It binds 127.0.0.1 unless told otherwise, answers GET and HEAD only, and serves only regular files inside the
run directory: the request path is percent-decoded once, and any path that is absolute after decoding, holds a
``..`` or hidden (dot) segment, a backslash or a NUL, or resolves (symbolic links followed) outside the run,
gets 404, as does anything that is not a file. ``/`` is the page.
"""

from __future__ import annotations

import mimetypes
import os
import posixpath
import shutil
import socket
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from neuronmap.errors import NeuronmapError
from neuronmap.explore.page import PAGE

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def resolve_request(root: Path, target: str) -> Path | None:
    """The file under ``root`` a request target names, or None (the caller answers 404)."""
    path = unquote(urlsplit(target).path, errors="strict") if target.startswith("/") else None
    if path is None or "\\" in path or "\x00" in path:
        return None
    if path == "/":
        path = "/" + PAGE
    segments = path.split("/")[1:]
    if any(s in ("", ".", "..") or s.startswith(".") for s in segments):
        return None
    root = root.resolve()
    candidate = (root / posixpath.join(*segments)).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


class _Handler(BaseHTTPRequestHandler):
    server_version = "neuronmap"
    sys_version = ""
    root: Path

    def _send(self, head_only: bool) -> None:
        try:
            path = resolve_request(self.root, self.path)
        except (UnicodeDecodeError, ValueError):
            path = None
        if path is None:
            self.send_error(HTTPStatus.NOT_FOUND)
            return
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        # Streamed, not read whole: fifty clients fetching a page of megabytes must not hold fifty copies.
        with path.open("rb") as fh:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", kind + ("; charset=utf-8" if kind.startswith("text/") else ""))
            self.send_header("Content-Length", str(os.fstat(fh.fileno()).st_size))
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if not head_only:
                shutil.copyfileobj(fh, self.wfile)

    def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
        self._send(head_only=False)

    def do_HEAD(self) -> None:  # noqa: N802
        self._send(head_only=True)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # the CLI states the address; request lines would drown it


def make_server(run: str | Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT) -> ThreadingHTTPServer:
    """A server for the run directory (not started: call ``serve_forever``). Port 0 picks a free port."""
    root = Path(run)
    if not root.is_dir():
        raise NeuronmapError(f"{root}: no such run directory")
    handler = type("RunHandler", (_Handler,), {"root": root.resolve()})
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # A thread per request, and a listen backlog for a burst of clients: the stdlib's 5 drops the rest of a burst
    # of connections, which then wait seconds for the handshake to be retried.
    server_class = type(
        "RunServer",
        (ThreadingHTTPServer,),
        {"address_family": family, "daemon_threads": True, "request_queue_size": 128},
    )
    try:
        return server_class((host, port), handler)
    except OSError as exc:
        raise NeuronmapError(f"cannot serve on {host}:{port} ({exc.strerror or exc})") from None


def address(server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    host = str(host)
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}/"
