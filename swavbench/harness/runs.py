"""Run records: `reports/runs/<run-id>/` holds the worker logs, steps, run header and `result.json`.

`collect_logs` copies what a launch wrote (worker logs renamed to global ranks; never launch's env dumps),
`build_record` makes result.json (schema: docs/design.md) and `write_json_atomic` writes it so that a
reader never sees half a file. swavbench.harness.runner runs a case and calls these.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

from swavbench.errors import EnvironmentProblem
from swavbench.harness import launch
from swavbench.harness.baselines import Baseline
from swavbench.harness.builds import build_info
from swavbench.harness.cases import Plan
from swavbench.harness.compare import Verdict
from swavbench.harness.metrics import RunAnalysis
from swavbench.paths import project_home, relative_to_home, source_checkout

# never launch's envlog/backup_env (full env); timeline.<rank>.json: start-up marks (benchmarks/time_to_verdict.py)
COPIED = ("workerlog.*", "steps.*.jsonl", "run_header.json", "timeline.*.json")


def new_run_id(case_id: str, now: Optional[float] = None) -> str:
    """`20261128T200102Z-swav_pt_1n8c_fp16o1-3f9a` (UTC, sortable, unique)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{stamp}-{case_id}-{uuid.uuid4().hex[:4]}"


def collect_logs(result: launch.LaunchResult, spec: launch.LaunchSpec, dest: Path) -> None:
    """Copy worker logs (renamed to global ranks), steps, run header and launcher logs into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for node_dir in result.log_dirs.values():
        mapping = launch.rank_map(node_dir)
        for pattern in COPIED:
            for src in node_dir.glob(pattern):
                name = src.name
                if pattern == "workerlog.*" and name.split(".")[-1].isdigit():
                    local = int(name.split(".")[-1])
                    name = f"workerlog.{mapping.get(local, local)}"
                shutil.copy2(src, dest / name)
    for src in spec.log_dir.glob("launcher.*.log"):
        shutil.copy2(src, dest / src.name)


def git_commit() -> Optional[str]:
    """Short commit of the swavbench source checkout this runs from (None from a wheel, outside git, or before
    the first commit): never the commit of some other repository the package happens to be installed in."""
    root = source_checkout()
    if root is None:
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _rank_rows(res: launch.LaunchResult, a: RunAnalysis) -> list[dict]:
    health = {h.rank: h for h in a.health}
    rows = []
    for r in res.ranks:
        h = health.get(r.rank)
        bad = r.note == "failed" or (h is not None and h.status != "ok")
        rows.append(
            {
                "rank": r.rank,
                "node": r.node,
                "exit_code": r.exit_code,
                "last_step": h.last_step if h else None,
                "reached_marker": h.reached_marker if h else None,
                "status": h.status if h else "no_log",
                "note": r.note or (h.reason if h else ""),
                "log_tail": (h.log_tail[-20:] if bad else h.log_tail[-3:]) if h else [],
            }
        )
    return rows


def build_record(
    plan: Plan,
    run_id: str,
    res: launch.LaunchResult,
    a: RunAnalysis,
    verdict: Verdict,
    profile: str,
    baseline: Optional[Baseline],
    bfile: Path,
) -> dict:
    """result.json (docs/design.md), from the plan, the launch, the analysis and the verdict."""
    header = (a.logs[0].header if a.logs.get(0) else None) or {}
    s = a.summary
    env = {
        k: header.get(k)
        for k in (
            "device",
            "world_size",
            "nnodes",
            "precision_requested",
            "precision_effective",
            "precision_note",
            "threads",
            "seed",
            "max_mem_source",
            "cuda_version",
            "cudnn_version",
            "gpu_driver",
        )
    }
    env.update(
        nproc_per_node=plan.scale.devices_per_node,
        hostname=header.get("hostname") or socket.gethostname(),
        world_size=env["world_size"] or plan.world_size,
        nnodes=env["nnodes"] or plan.scale.nnodes,
        topology=f"{plan.scale.nnodes}x{plan.scale.devices_per_node}",
        case_topology=f"{plan.case.gpu.nnodes}x{plan.case.gpu.devices_per_node}",
    )
    failure = None
    if verdict.status == "failed":
        failed_rank = res.failed_rank
        failure = {
            "kind": verdict.failure_kind,
            "rank": failed_rank,
            "message": verdict.message,
            "log_tail": [d.strip() for d in verdict.details[1:]],
        }
    rank0_steps = a.steps[0].steps if a.steps.get(0) else []
    rank0 = a.logs.get(0)
    return {
        "schema_version": 1,
        "run_id": run_id,
        "case": plan.case.id,
        "config": plan.config,
        "profile": profile,
        "device_profile": plan.device_profile,
        "started_utc": _utc(res.started),
        "finished_utc": _utc(res.finished),
        "duration_s": res.duration_s,
        "commit": git_commit(),
        "swavbench_version": _swavbench_version(),
        "build": build_info(),  # what rebuilds this code: an A/B confirmation's reference (issue 12)
        "paddle_version": header.get("paddle_version"),
        "paddle_commit": header.get("paddle_commit"),
        "home": str(project_home()),
        "command": res.commands[0] if res.commands else [],
        "commands": res.commands,
        "environment": env,
        "status": verdict.status,
        "exit_code": verdict.exit_code,
        "message": verdict.message,
        "advice": verdict.advice,
        "metrics": {"marker": s.marker, "loss": s.loss, "ips": s.ips, "max_mem": s.max_mem}
        if s
        else {"marker": plan.marker, "loss": None, "ips": None, "max_mem": None},
        "baseline": None
        if baseline is None
        else {
            "path": relative_to_home(bfile),
            "metrics": baseline.metrics,
            "tolerances": baseline.tolerances,
            "provenance": baseline.provenance,
        },
        "checks": [
            {k: getattr(c, k) for k in ("metric", "baseline", "measured", "diff", "tolerance", "verdict")}
            for c in verdict.checks
        ],
        "ranks": _rank_rows(res, a),
        "steps": [dict(step, rank=0) for step in rank0_steps],
        "log_lines": [
            {
                "epoch": r.epoch,
                "iter": r.iter,
                "loss": r.metrics.get(plan.case.metric),
                "ips": r.ips,
                "batch_cost": r.batch_cost,
                "reader_cost": r.reader_cost,
            }
            for r in (rank0.records if rank0 else [])
        ],
        "failure": failure,
        "ips_steady": s.steady.as_dict() if s and s.steady else None,  # judges ips when the baseline has it
        "notes": list(plan.notes),
        "resources": {"peak_rss_mb": res.peak_rss_mb, "port_free": res.port_free, "strays": res.strays},
    }


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _swavbench_version() -> str:
    from swavbench import __version__

    return __version__


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON via a temp file in the same folder, fsync, rename: readers never see half a file.

    An OSError (disk full, read-only folder) is an EnvironmentProblem naming the file; nothing is left.
    Temp files of `path` left by a killed writer are removed first (one writer per run folder); the file
    keeps the mode of the one it replaces, 0644 when new.
    """
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        mode = stat.S_IMODE(path.stat().st_mode) if path.is_file() else 0o644
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        raise EnvironmentProblem(f"could not write {path}: {err.strerror or err} (disk full?)") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
