"""Run `python -m paddle.distributed.launch` (one launcher per node) under a timeout and a no-progress watchdog.

Facts this module is built on (checked on Paddle 3.3.1, launch/utils/process_context.py):
- launch starts every rank with `os.setsid`, so ranks ESCAPE the launcher's process group; killing the
  launcher's group is not enough. Every process of a run carries SWAVBENCH_RUN_TOKEN in its environment
  (launch copies its env to the ranks), and `procs.find(token)` finds them all in /proc, strays included.
- launch's collective controller never restarts a pod (--max_restart only drives the etcd elastic mode; it
  is passed as 0 anyway): when a rank fails, launch SIGTERMs its peers, logs
  `Container rank <local> status failed ... code <rc>` and exits non-zero; peer launchers stop too.
- launch lets env vars (PADDLE_MASTER, PADDLE_NNODES, PADDLE_RANK, PADDLE_TRAINER_ID, ...) override its
  flags; they are read here (PASSL's cluster form) and removed from the launcher's env so flags win.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional, Sequence, TextIO

from swavbench.errors import EnvironmentProblem, SwavbenchError
from swavbench.harness import procs
from swavbench.harness.logparse import ParsedLog, parse_log_file
from swavbench.harness.progress import Progress

TOKEN_ENV = procs.TOKEN_ENV
SCRUB_ENV = (
    "PADDLE_MASTER",
    "PADDLE_NNODES",
    "PADDLE_RANK",
    "PADDLE_TRAINER_ID",
    "PADDLE_LOG_DIR",
    "PADDLE_DEVICES",
    "PADDLE_NPROC_PER_NODE",
    "PADDLE_JOB_ID",
    "PADDLE_MAX_RESTART",
    "PADDLE_RUN_MODE",
    "PADDLE_ELASTIC_LEVEL",
    "PADDLE_GLOBAL_RANK",
    "PADDLE_LOCAL_RANK",
    "PADDLE_GLOBAL_SIZE",
    "PADDLE_LOCAL_SIZE",
    "PADDLE_TRAINERS_NUM",
    "PADDLE_TRAINER_ENDPOINTS",
    "PADDLE_CURRENT_ENDPOINT",
    "PADDLE_RANK_IN_NODE",
    "POD_IP",
    "PADDLE_IPS",
)
FAILED_RE = re.compile(r"Container rank (\d+) status failed cmd .* code (-?\d+) log (\S+)")


@dataclass(frozen=True)
class LaunchSpec:
    """What to launch: the worker command on `nproc_per_node` ranks of each node in `node_ranks`."""

    worker: tuple[str, ...]  # e.g. (".venv/bin/swavbench", "train", "-c", CFG, "--profile", "cpu", ...)
    nproc_per_node: int
    log_dir: Path
    nnodes: int = 1
    node_ranks: tuple[int, ...] = (0,)  # launchers started here; (-1,) lets the master assign (cluster)
    master: Optional[str] = None  # host:port; None = launch's own (1 node) or a free 127.0.0.1 port
    devices: Optional[str] = None  # --devices (GPU); with it launch counts ranks from the list
    threads: int = 1  # OMP_NUM_THREADS of every rank
    env: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 600.0
    stall_s: float = 120.0  # no new byte in any worker log / steps file for this long = hang
    startup_s: float = 0.0  # allowed before the first byte (0: stall_s + 60)
    grace_s: float = 5.0  # SIGTERM -> SIGKILL
    peer_grace_s: float = 5.0  # after one launcher failed, the others get this long to stop
    python: str = ""  # interpreter that runs paddle.distributed.launch ("" = this one; an A/B side's own)

    def node_dir(self, node: int) -> Path:
        return self.log_dir / f"node{node}" if len(self.node_ranks) > 1 else self.log_dir


@dataclass
class RankExit:
    rank: int  # global rank
    node: int
    local_rank: int
    exit_code: Optional[int]  # None when unknown (stopped by launch after a peer failed, or by the watchdog)
    note: str = ""


@dataclass
class LaunchResult:
    status: str  # completed | failed | timeout | stalled | launch_error | stopped (the caller's `stop` event)
    message: str
    commands: list[list[str]]
    returncodes: dict[int, Optional[int]]
    ranks: list[RankExit]
    log_dirs: dict[int, Path]
    started: float
    finished: float
    master: Optional[str] = None
    survivors: list[str] = field(default_factory=list)  # processes still alive after cleanup (must be [])
    strays: list[str] = field(default_factory=list)  # processes killed after the launchers had exited
    port_free: Optional[bool] = None
    peak_rss_mb: float = 0.0
    failed_rank: Optional[int] = None
    seen_ranks: set = field(default_factory=set)  # global ranks seen alive by the watcher
    first_gone: list = field(default_factory=list)  # ranks whose process vanished first, while others ran

    @property
    def duration_s(self) -> float:
        return round(self.finished - self.started, 3)

    @property
    def ok(self) -> bool:
        return self.status == "completed"


def swavbench_script() -> str:
    """The `swavbench` console script next to this interpreter (what each rank runs)."""
    script = Path(sys.executable).parent / "swavbench"
    if not script.exists():
        raise EnvironmentProblem(f"{script} not found: install swavbench in this environment (pip install -e .)")
    return str(script)


def cluster_from_env(environ: Mapping[str, str]) -> dict:
    """PASSL's cluster variables -> LaunchSpec fields ({} on a single machine)."""
    out: dict = {}
    nnodes = int(environ.get("PADDLE_NNODES", "1") or 1)
    if nnodes > 1 or environ.get("PADDLE_MASTER"):
        out.update(nnodes=nnodes, master=environ.get("PADDLE_MASTER"), node_ranks=(-1,))
    if environ.get("CUDA_VISIBLE_DEVICES"):
        out["devices"] = environ["CUDA_VISIBLE_DEVICES"]
    return out


def build_command(spec: LaunchSpec, node: int, master: Optional[str], job_id: str) -> list[str]:
    """The launcher argv of one node (no shell)."""
    cmd = [
        spec.python or sys.executable,
        "-m",
        "paddle.distributed.launch",
        "--log_dir",
        str(spec.node_dir(node)),
        "--max_restart",
        "0",
        "--job_id",
        job_id,
    ]
    cmd += ["--devices", spec.devices] if spec.devices else ["--nproc_per_node", str(spec.nproc_per_node)]
    if spec.nnodes > 1:
        cmd += ["--nnodes", str(spec.nnodes), "--master", str(master)]
        if node >= 0:
            cmd += ["--rank", str(node)]
    return cmd + list(spec.worker)


def launcher_env(spec: LaunchSpec, token: str, base: Optional[Mapping[str, str]] = None) -> dict:
    """The launchers' env: ours minus launch's overriding variables, plus threads, the token, spec.env."""
    env = {k: v for k, v in (os.environ if base is None else base).items() if k not in SCRUB_ENV}
    env.update(
        {
            "OMP_NUM_THREADS": str(spec.threads),
            "MKL_NUM_THREADS": str(spec.threads),
            "PYTHONUNBUFFERED": "1",
            TOKEN_ENV: token,
        }
    )
    env.update(spec.env)
    return env


def _master_for(spec: LaunchSpec) -> Optional[str]:
    if spec.nnodes <= 1:
        return None
    if spec.master:
        host, _, port = spec.master.rpartition(":")
        if host in ("127.0.0.1", "localhost") and not procs.port_is_free(int(port)):
            raise EnvironmentProblem(
                f"master port {spec.master} is already in use on this machine "
                f"({procs.port_owner(int(port))}); pick another or free it"
            )
        return spec.master
    return f"127.0.0.1:{procs.pick_free_port()}"


class _Terminated(BaseException):
    """SIGTERM received by the harness while a run was going."""


def run(spec: LaunchSpec, progress: Optional[Progress] = None, stop: Optional[threading.Event] = None) -> LaunchResult:
    """Launch, watch, judge the process side of a run, and always leave no process behind.

    `stop` (set from another thread, e.g. an A/B session that has its verdict) ends the run early: every
    process is stopped as after a failure and the result's status is "stopped".
    """
    master, token = _master_for(spec), uuid.uuid4().hex
    job_id = f"swavbench-{token[:8]}"
    env = launcher_env(spec, token)
    commands = [build_command(spec, node, master, job_id) for node in spec.node_ranks]
    launchers: dict[int, subprocess.Popen] = {}
    handles: list[TextIO] = []
    result = LaunchResult("launch_error", "", commands, {}, [], {}, time.time(), 0.0, master)
    old_handler = _install_sigterm()
    try:
        for node, cmd in zip(spec.node_ranks, commands):
            spec.node_dir(node).mkdir(parents=True, exist_ok=True)
            handle = open(spec.log_dir / f"launcher.{max(node, 0)}.log", "wb")
            handles.append(handle)
            launchers[node] = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
            )
            result.log_dirs[node] = spec.node_dir(node)
        _watch(spec, launchers, token, result, progress, stop)
    except KeyboardInterrupt:
        result.status, result.message = "interrupted", "interrupted (Ctrl-C): every rank was stopped"
        raise
    except _Terminated:
        result.status, result.message = "interrupted", "terminated (SIGTERM): every rank was stopped"
        raise SystemExit(143) from None
    finally:
        masked = _mask_signals()  # a second Ctrl-C / SIGTERM must not interrupt the cleanup itself
        result.strays = _cleanup(spec, launchers, token, result)
        for handle in handles:
            handle.close()
        result.survivors = [p.describe() for p in procs.find(token)]
        used = master or _paddle_master(spec)
        if used:
            result.port_free = procs.port_is_free(int(used.rpartition(":")[2]))
        result.finished = time.time()
        _restore_signals(masked)
        _restore_sigterm(old_handler)
        if progress is not None:
            progress.close()
    return result


def _install_sigterm():
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        raise _Terminated()

    return signal.signal(signal.SIGTERM, handler)


def _mask_signals() -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(saved: dict) -> None:
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def _restore_sigterm(old) -> None:
    if old is not None:
        signal.signal(signal.SIGTERM, old)


def _watch(
    spec: LaunchSpec,
    launchers: dict[int, subprocess.Popen],
    token: str,
    result: LaunchResult,
    progress: Optional[Progress],
    stop: Optional[threading.Event] = None,
) -> None:
    """Poll until every launcher exited, or the timeout / watchdog / a peer failure / `stop` ends the run."""
    start = last_change = time.monotonic()
    sizes: dict[Path, int] = {}
    seen_output, peer_deadline, last_scan = False, None, 0.0
    vanished_deadline: Optional[float] = None
    startup = spec.startup_s or spec.stall_s + 60.0
    while True:
        time.sleep(0.25)
        now = time.monotonic()
        if _grew(result.log_dirs.values(), sizes):
            last_change, seen_output = now, True
        if progress is not None:
            progress.update()
        if now - last_scan >= 1.0:
            last_scan = now
            live = procs.find(token)
            result.peak_rss_mb = max(result.peak_rss_mb, procs.rss_mb(live))
            _note_vanished(result, {p.global_rank for p in live if p.global_rank is not None})
        codes = {node: p.poll() for node, p in launchers.items()}
        result.returncodes = codes
        if all(c is not None for c in codes.values()):
            _judge_exits(spec, result)
            return
        if stop is not None and stop.is_set():
            result.status, result.message = "stopped", "stopped by the caller before the ranks finished"
            result.ranks = _all_ranks(spec, result)
            return
        if any(c not in (None, 0) for c in codes.values()) and peer_deadline is None:
            peer_deadline = now + spec.peer_grace_s  # paddle's HTTP master does not tell peers: we do
        if peer_deadline is not None:
            if now > peer_deadline:
                _judge_exits(spec, result)
                result.message += f"; the other nodes were stopped {spec.peer_grace_s:.0f} s later"
                return
            continue
        if now - start > spec.timeout_s:
            result.status = "timeout"
            result.message = f"timeout: the run did not finish within {spec.timeout_s:.0f} s"
            result.ranks = _diagnose(spec, token, result)
            return
        quiet = now - last_change
        if (seen_output and quiet > spec.stall_s) or (not seen_output and quiet > startup):
            live, gone = _rank_processes(spec, token, result)
            if gone or (seen_output and not live):  # a rank exited while its peers wait, or launch is stopping:
                vanished_deadline = vanished_deadline or now + spec.peer_grace_s  # give launch time to report it
                if now < vanished_deadline:
                    continue
                if not live:
                    result.ranks = _diagnose(spec, token, result)
                    result.status = "launch_error"
                    result.message = (f"every rank process is gone but launch did not exit within "
                                      f"{spec.peer_grace_s:.0f} s")
                    return
            result.status = "stalled"
            result.ranks = _diagnose(spec, token, result)
            stopped = [r.rank for r in result.ranks if "stopped" in r.note]
            what = f"rank {', '.join(map(str, stopped))} stopped (SIGSTOP?)" if stopped else "no rank moved"
            if gone:
                what += f"; rank {', '.join(map(str, gone))} no longer running (exited or died)"
            result.message = f"hang: no progress in any worker log for {quiet:.0f} s; {what}"
            result.failed_rank = stopped[0] if stopped else None
            return


def _worker_log(spec: LaunchSpec, r: RankExit) -> Optional[ParsedLog]:
    """Rank r's parsed worker log, or None when there is none to read (no evidence either way)."""
    try:
        return parse_log_file(spec.node_dir(r.node) / f"workerlog.{r.local_rank}")
    except SwavbenchError:
        return None


def _died_of_a_peer(spec: LaunchSpec, r: RankExit) -> bool:
    """True when rank r's worker log shows a collective timeout / closed connection (a peer died first)."""
    log = _worker_log(spec, r)
    return log is not None and log.peer_error is not None


def _followed_another(spec: LaunchSpec, r: RankExit) -> bool:
    """True when rank r's worker log shows it only followed another rank's death: aborted on a collective
    error, or terminated by the launcher. Several ranks can vanish between two process scans (the launcher
    stops the others right after the first death), and those are not first."""
    log = _worker_log(spec, r)
    return log is not None and (log.peer_error is not None or log.terminated_by_launcher)


def _note_vanished(result: LaunchResult, alive: set) -> None:
    """Remember the first ranks whose process disappeared while other ranks still ran.

    paddle's launcher reports the first failed rank IT notices: when a rank is killed, a peer that aborts on a
    collective timeout can be reported instead. The order in which processes vanish names the real first one.
    """
    gone = result.seen_ranks - alive
    if gone and alive and not result.first_gone:
        result.first_gone = sorted(gone)
    result.seen_ranks |= alive


def _rank_processes(spec: LaunchSpec, token: str, result: LaunchResult) -> tuple[set, list[int]]:
    """(global ranks alive on this host, ranks whose process is gone while others still run: first first)."""
    live = {p.global_rank for p in procs.find(token) if p.global_rank is not None}
    _note_vanished(result, live)
    if not live:
        return live, []
    missing = sorted({r.rank for r in _all_ranks(spec, result)} - live)
    return live, result.first_gone or missing


def _grew(dirs, sizes: dict[Path, int]) -> bool:
    """True when any workerlog.* / steps.*.jsonl in `dirs` changed size since the last call."""
    changed = False
    for d in dirs:
        for path in list(Path(d).glob("workerlog.*")) + list(Path(d).glob("steps.*.jsonl")):
            try:
                size = path.stat().st_size
            except OSError:
                continue
            if sizes.get(path) != size:
                sizes[path], changed = size, True
    return changed


def _paddle_master(spec: LaunchSpec) -> Optional[str]:
    """The master host:port launch picked itself (single node), from its `envlog.0`."""
    try:
        text = (spec.node_dir(spec.node_ranks[0]) / "envlog.0").read_text(errors="replace")
    except OSError:
        return None
    return next((line.split("=", 1)[1] for line in text.splitlines() if line.startswith("PADDLE_MASTER=")), None)


def rank_map(node_dir: Path) -> dict[int, int]:
    """local rank -> global rank of one node, from launch's `envlog.<local>` files."""
    out = {}
    for path in node_dir.glob("envlog.*"):
        local = path.name.split(".")[-1]
        if not local.isdigit():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("PADDLE_GLOBAL_RANK="):
                out[int(local)] = int(line.split("=", 1)[1])
    return out


def _all_ranks(spec: LaunchSpec, result: LaunchResult) -> list[RankExit]:
    ranks = []
    for node, node_dir in result.log_dirs.items():
        mapping = rank_map(node_dir)
        for local in range(spec.nproc_per_node if not spec.devices else len(spec.devices.split(","))):
            glob_rank = mapping.get(local, max(node, 0) * spec.nproc_per_node + local)
            ranks.append(RankExit(glob_rank, node, local, None))
    return sorted(ranks, key=lambda r: r.rank)


def _judge_exits(spec: LaunchSpec, result: LaunchResult) -> None:
    """Per-rank exit codes from the launchers' own reports; the first failed rank is named."""
    ranks = _all_ranks(spec, result)
    failed: dict[tuple[int, int], int] = {}
    for node in result.log_dirs:
        text = (spec.log_dir / f"launcher.{max(node, 0)}.log").read_text(errors="replace")
        for m in FAILED_RE.finditer(text):
            failed.setdefault((node, int(m.group(1))), int(m.group(2)))
    for r in ranks:
        code = result.returncodes.get(r.node)
        if (r.node, r.local_rank) in failed:
            r.exit_code, r.note = failed[(r.node, r.local_rank)], "failed"
        elif code == 0:
            r.exit_code = 0
        elif code is None:
            r.note = "stopped by swavbench after another node failed"
        else:
            r.note = "stopped by launch after a failure"
    bad = [r for r in ranks if r.note == "failed"]
    result.ranks = ranks
    if all(c == 0 for c in result.returncodes.values()):
        result.status, result.message = "completed", f"all {len(ranks)} ranks exited 0"
    elif bad:
        result.status, result.failed_rank = "failed", bad[0].rank
        result.message = "; ".join(
            f"rank {r.rank} exited with code {r.exit_code}{procs.signal_name(r.exit_code)}" for r in bad
        )
        by_rank = {r.rank: r for r in ranks}
        earlier = [g for g in result.first_gone if g not in {r.rank for r in bad}
                   and not (g in by_rank and _followed_another(spec, by_rank[g]))]  # fmt: skip
        if earlier and _died_of_a_peer(spec, bad[0]):  # the reported rank only followed another one's death
            result.failed_rank = earlier[0]
            result.message = (
                f"rank {earlier[0]} died first (its process vanished while the others still ran), then "
                + result.message
            )
    else:
        result.status = "launch_error"
        result.message = (
            "launcher exited "
            + ", ".join(f"node {n}: {c}" for n, c in result.returncodes.items())
            + " before any rank failed"
        )


def _diagnose(spec: LaunchSpec, token: str, result: LaunchResult) -> list[RankExit]:
    """Before killing a hung run: which ranks are stopped (state T) or still running."""
    ranks = _all_ranks(spec, result)
    live = {p.global_rank: p for p in procs.find(token) if p.global_rank is not None}
    for r in ranks:
        p = live.get(r.rank)
        if p is None:
            r.note = "not running"
        elif p.state in ("T", "t"):
            r.note = "stopped (state T) when the watchdog fired; killed"
        else:
            r.note = f"running (state {p.state}) when the watchdog fired; killed"
    return ranks


def _cleanup(spec: LaunchSpec, launchers: dict[int, subprocess.Popen], token: str, result: LaunchResult) -> list[str]:
    """SIGTERM (+SIGCONT) launchers and every token process, SIGKILL what remains; return strays killed."""
    running = [p for p in launchers.values() if p.poll() is None]
    strays = [] if running else [p.describe() for p in procs.find(token)]
    for p in running:
        procs.signal_group(p.pid, signal.SIGTERM)
    procs.signal_all(procs.find(token), signal.SIGTERM)
    procs.wait_gone(token, list(launchers.values()), spec.grace_s)
    for p in launchers.values():
        if p.poll() is None:
            procs.signal_group(p.pid, signal.SIGKILL)
    procs.signal_all(procs.find(token), signal.SIGKILL)
    procs.wait_gone(token, list(launchers.values()), spec.grace_s)
    for node, p in launchers.items():
        try:
            result.returncodes[node] = p.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass
    return strays


def default_worker(train_args: Sequence[str]) -> tuple[str, ...]:
    """`<venv>/bin/swavbench train ARGS...`, or SWAVBENCH_WORKER (a command line, shell-split) + ARGS."""
    custom = os.environ.get("SWAVBENCH_WORKER")
    head = shlex.split(custom) if custom else [swavbench_script(), "train"]
    return tuple(head) + tuple(train_args)
