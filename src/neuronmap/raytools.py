"""Ray for any stage: the module (or a clear error naming the extra), and a cluster started or reached.

Shared by the trace's actors (``trace.ray_backend``) and the map's row blocks (``graph.ray_blocks``); Ray itself
is imported only when asked for.
"""

from __future__ import annotations

import socket
from typing import Any

from neuronmap.errors import NeuronmapError

CONNECT_TIMEOUT = 5.0  # seconds to open a TCP connection to a given head before saying it is not there


def import_ray() -> Any:
    """The ray module, or a clear error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise NeuronmapError(
            "--backend ray needs Ray: pip install 'neuronmap[ray]' (or pip install ray)"
        ) from None
    return ray


def unreachable(address: str, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why a TCP connection to ``address``'s host:port does not open within ``timeout`` seconds; None when it
    does or when the address names no port (``auto``). ``ray.init`` itself retries an absent head for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return None
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return str(exc) or type(exc).__name__


def connect(ray: Any, address: str | None, workers: int) -> bool:
    """Start or reach a cluster unless Ray is already up; True when this call started it (so stops it)."""
    if ray.is_initialized():
        return False
    reason = unreachable(address) if address else None
    if reason:
        raise NeuronmapError(f"could not reach Ray at {address}: {reason} (is a head node running there?)")
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            log_to_driver=False,
            ignore_reinit_error=True,
            # A local cluster gets exactly the workers' CPUs; a remote one has its own resources.
            **({} if address else {"num_cpus": workers}),
        )
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise NeuronmapError(
            f"could not start or reach Ray at {address or 'a local cluster'}: {exc}"
        ) from exc
    return True
