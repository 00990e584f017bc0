"""Forming the CPU (gloo) process group without paddle's fixed waits. Measured on Paddle 3.3.1, 8 ranks:

- A rank whose first connect to the TCPStore finds rank 0 not yet listening sleeps a fixed 3 s before it
  retries (tcp_utils.cc "Retry to connect ... while the server is not yet listening"). Ranks start together,
  so most runs have one. Waiting here until the store's port is in LISTEN state (read from /proc/net/tcp,
  no connection made) lets the first connect succeed.
- Every store request costs ~45-90 ms on loopback: the client writes each request in several small pieces
  without TCP_NODELAY, so Nagle's algorithm waits for the peer's delayed ACK (40 ms). Gloo's full-mesh
  rendezvous makes dozens of requests per rank: 2-3 s. TCP_NODELAY on the store's sockets (the client's on
  every rank, the listening and accepted ones on rank 0) makes each request ~0.1 ms.

Together: init_parallel_env 5.4-6.0 s -> 0.3-0.4 s after the last rank's import (benchmarks/time_to_verdict.py,
docs/performance.md). Nothing here changes what a collective computes: the store only carries the
rendezvous, and NODELAY only changes when bytes leave. The gloo pairs that carry the all-reduces set their
own socket options. `form_process_group` reports what it did for the run header.
"""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path
from typing import Optional

LISTEN = "0A"  # /proc/net/tcp state code of a listening socket
WAIT_LIMIT_S = 120.0  # then paddle's own connect (with its retries and its error) takes over


def store_endpoint(environ: Optional[dict] = None) -> Optional[tuple[str, int]]:
    """(host, port) of the TCPStore, found as paddle.distributed.init_parallel_env finds it."""
    env = os.environ if environ is None else environ
    if env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        host, port = env["MASTER_ADDR"], env["MASTER_PORT"]
    else:
        endpoint = env.get("PADDLE_MASTER") or (env.get("PADDLE_TRAINER_ENDPOINTS") or "").split(",")[0]
        host, _, port = endpoint.rpartition(":")
    return (host, int(port)) if host and port.isdigit() else None


def listening_ports(tables: str = "/proc/net/tcp /proc/net/tcp6") -> set[int]:
    """Local ports in LISTEN state on this host (Linux; empty elsewhere)."""
    ports = set()
    for table in tables.split():
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_until_listening(port: int, limit_s: float = WAIT_LIMIT_S, poll_s: float = 0.01) -> bool:
    """Poll until `port` listens on this host; False after `limit_s` (paddle's connect then decides)."""
    deadline = time.monotonic() + limit_s
    while port not in listening_ports():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


def set_nodelay(port: int) -> int:
    """TCP_NODELAY on this process's TCP sockets whose local or peer port is `port`; returns how many."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            sock = socket.socket(fileno=fd)
        except (ValueError, OSError):
            continue
        try:
            if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
                if port in (sock.getsockname()[1], _peer_port(sock)):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    count += 1
        except OSError:
            pass
        finally:
            sock.detach()  # the descriptor stays paddle's
    return count


def _peer_port(sock: socket.socket) -> Optional[int]:
    try:
        return sock.getpeername()[1]
    except OSError:
        return None


def form_process_group(rank: int) -> str:
    """init_parallel_env for CPU ranks, with the store made first (see the module doc); what it did."""
    import paddle.distributed as dist
    from paddle.base import core

    endpoint = store_endpoint()
    local = endpoint is not None and endpoint[0] == os.environ.get("PADDLE_CURRENT_ENDPOINT", "").rpartition(":")[0]
    if endpoint is None or not Path("/proc/self/fd").is_dir():
        dist.init_parallel_env()
        return "paddle default (store endpoint or /proc not found)"
    waited = rank != 0 and local and wait_until_listening(endpoint[1])
    core.create_or_get_global_tcp_store()  # init_parallel_env below reuses this global store
    sockets = set_nodelay(endpoint[1])
    dist.init_parallel_env()
    return (f"store {endpoint[0]}:{endpoint[1]}: " + ("waited for it to listen, " if waited else "")
            + f"TCP_NODELAY on {sockets} store socket(s)")
