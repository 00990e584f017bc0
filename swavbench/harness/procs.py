"""Process and port helpers over /proc (Linux), without psutil: find a run's processes, signal, wait, ports.

A run's processes are found by the token in their environment (`SWAVBENCH_RUN_TOKEN=<hex>`), which the
launchers pass to every rank and which a rank's own children inherit. That finds ranks that left the
launcher's process group (paddle's launch starts each rank with setsid) and strays that left theirs.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import time
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

TOKEN_ENV = "SWAVBENCH_RUN_TOKEN"


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    state: str  # R S D T t Z ...
    cmdline: str
    global_rank: Optional[int]  # PADDLE_GLOBAL_RANK of a rank (and its children), else None
    rss_kb: int

    def describe(self) -> str:
        rank = f" rank {self.global_rank}" if self.global_rank is not None else ""
        return f"pid {self.pid}{rank} [{self.state}] {self.cmdline[:120]}"


def _read(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _proc(pid: int, environ: dict[bytes, bytes]) -> Optional[Proc]:
    try:
        stat = _read(f"/proc/{pid}/stat").decode(errors="replace")
        cmd = _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()
        status = _read(f"/proc/{pid}/status").decode(errors="replace")
    except OSError:
        return None
    state, ppid = stat.rpartition(")")[2].split()[:2]
    rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    rank = environ.get(b"PADDLE_GLOBAL_RANK")
    return Proc(pid, int(ppid), state, cmd, int(rank) if rank and rank.isdigit() else None, rss)


def find(token: str) -> list[Proc]:
    """Live (non-zombie) processes whose environment holds SWAVBENCH_RUN_TOKEN=token (not this process)."""
    return find_env(TOKEN_ENV, token)


def find_env(key: str, value: str) -> list[Proc]:
    """Live (non-zombie) processes, other than this one, whose environment holds key=value."""
    needle = f"{key}={value}".encode()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            raw = _read(f"/proc/{name}/environ")
        except OSError:
            continue
        items = raw.split(b"\0")
        if needle not in items:
            continue
        environ = dict(item.split(b"=", 1) for item in items if b"=" in item)
        proc = _proc(int(name), environ)
        if proc is not None and proc.state != "Z":
            out.append(proc)
    return out


def signal_group(pgid: int, sig: int) -> None:
    """Signal a process group (a launcher started with start_new_session leads its own group)."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def signal_all(procs_: Iterable[Proc], sig: int) -> None:
    """Signal each process; after SIGTERM also SIGCONT, so a stopped (SIGSTOP) process can act on it."""
    for p in procs_:
        for s in (sig, signal.SIGCONT) if sig == signal.SIGTERM else (sig,):
            try:
                os.kill(p.pid, s)
            except (ProcessLookupError, PermissionError):
                pass


def wait_gone(token: str, popens: Sequence, timeout: float) -> bool:
    """Wait until no token process is left and every Popen exited (reaped); True if so."""
    deadline = time.monotonic() + timeout
    while True:
        alive = [p for p in popens if p.poll() is None]
        if not alive and not find(token):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def rss_mb(procs_: Iterable[Proc]) -> float:
    """Summed resident memory of the processes, MiB."""
    return round(sum(p.rss_kb for p in procs_) / 1024.0, 1)


def listening_ports() -> set[int]:
    """TCP ports with a socket in LISTEN state on this machine (IPv4 and IPv6)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = _read(table).decode().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == "0A":
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Nobody listens on `port` and it can be bound."""
    if port in listening_ports():
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def port_owner(port: int) -> str:
    """A short description of who holds `port` (best effort)."""
    return f"a process listens on {port}" if port in listening_ports() else f"port {port} cannot be bound"


def pick_free_port(low: int = 20000, high: int = 32000, tries: int = 100) -> int:
    """A free port below the ephemeral range (where launch and the kernel pick theirs), checked free."""
    for _ in range(tries):
        port = random.randint(low, high)
        if port_is_free(port):
            return port
    raise OSError(f"no free TCP port in {low}-{high}")


def signal_name(code: Optional[int]) -> str:
    """' (SIGKILL)' for -9 (a rank killed by a signal), '' otherwise."""
    if code is None or code >= 0:
        return ""
    try:
        return f" ({signal.Signals(-code).name})"
    except ValueError:
        return ""
