"""Run one case end to end and keep its record in `reports/runs/<run-id>/` (worker logs + result.json).

`execute(plan, ...)` launches the case (swavbench.launch), copies the worker logs, steps and run header
into the run folder, analyses them (swavbench.metrics), judges them against the baseline of this machine
(swavbench.compare) and writes `result.json` atomically (schema: docs/design.md). The CLI (`swavbench
run`, `update-baseline`) and the pytest plugin all call it, so they give the same verdict.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, TextIO

from swavbench import launch
from swavbench.baselines import Baseline, baseline_path, check_compatible, load_baseline, machine_profile
from swavbench.cases import Plan
from swavbench.compare import Verdict, compare, format_table, no_baseline_verdict, verdict_from_failure
from swavbench.config import REPO_ROOT
from swavbench.errors import RunFailed, SwavbenchError
from swavbench.metrics import RunAnalysis, analyse_logdir

REPORTS_DIR = REPO_ROOT / "reports"
BASELINES_DIR = REPO_ROOT / "baselines"
COPIED = ("workerlog.*", "steps.*.jsonl", "run_header.json")  # never launch's envlog/backup_env (full env)


@dataclass
class Outcome:
    """Everything one case run produced."""

    plan: Plan
    run_id: str
    run_dir: Path
    verdict: Verdict
    record: dict
    baseline_file: Path
    baseline: Optional[Baseline]
    profile: str
    launch: Optional[launch.LaunchResult] = None
    analysis: Optional[RunAnalysis] = None
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    def text(self) -> str:
        """The verdict block: what ran, the table, what happened, what to do, the dead rank's log tail."""
        v, p = self.verdict, self.plan
        lines = [f"case {p.case.id} ({p.device_profile}, {p.scale.nnodes}x{p.scale.devices_per_node} ranks, "
                 f"marker {p.marker}) vs {self.baseline_file}"]
        lines += [f"note: {n}" for n in p.notes] + self.warnings
        lines += [format_table(v)] if v.checks else []
        lines.append(f"{v.status.upper()}: {v.message}")
        if v.advice:
            lines.append(f"what to do: {v.advice}")
        lines += v.details
        lines.append(f"run record: {self.run_dir}")
        return "\n".join(lines)


def new_run_id(case_id: str, now: Optional[float] = None) -> str:
    """`20261128T200102Z-swav_pt_1n8c_fp16o1-3f9a` (UTC, sortable, unique)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    return f"{stamp}-{case_id}-{uuid.uuid4().hex[:4]}"


def profile_of(plan: Plan, header: Optional[dict] = None) -> str:
    """This machine's baseline profile key, as `swavbench compare` computes it from a run header."""
    header = header or {}
    threads = header.get("threads") if isinstance(header.get("threads"), int) else plan.threads
    device = header.get("device") or ("cpu" if plan.device_profile == "cpu" else None)
    return machine_profile(threads=threads, device=device)


def launch_spec(plan: Plan, log_dir: Path, worker: Optional[Sequence[str]] = None) -> launch.LaunchSpec:
    """The LaunchSpec of a plan: all nodes here (simulated on 127.0.0.1), or PASSL's cluster env on GPU."""
    cmd = tuple(worker) + tuple(plan.train_args()) if worker else launch.default_worker(plan.train_args())
    fields = dict(worker=cmd, nproc_per_node=plan.scale.devices_per_node, log_dir=log_dir,
                  nnodes=plan.scale.nnodes, node_ranks=tuple(range(plan.scale.nnodes)), threads=plan.threads,
                  timeout_s=plan.timeout_s, stall_s=plan.stall_s)
    if plan.device_profile == "gpu":
        fields.update(launch.cluster_from_env(os.environ))
    return launch.LaunchSpec(**fields)


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


def _launch_failure(res: launch.LaunchResult, a: RunAnalysis, spec: launch.LaunchSpec) -> Optional[RunFailed]:
    """The run's failure as the launcher/watchdog saw it, with the guilty rank's log tail."""
    if res.ok and not res.survivors:
        return None
    kinds = {"failed": "rank_died", "stalled": "hang", "timeout": "timeout", "launch_error": "launch_error"}
    err = RunFailed(kinds.get(res.status, res.status), res.message)
    rank = res.failed_rank if res.failed_rank is not None else 0
    health = next((h for h in a.health if h.rank == rank), None) if a else None
    if res.status == "failed" and health is not None and health.reason:
        err = RunFailed("rank_died", f"{res.message}; rank {rank} {health.reason}")
    log = a.logs.get(rank) if a else None
    if log is not None and log.tail:
        err.details = [f"last lines of workerlog.{rank}:"] + [f"  {t}" for t in log.tail[-10:]]
    elif log is not None:
        err.details = [f"workerlog.{rank} is empty (only rank 0 prints step lines)"]
    elif res.status == "launch_error":
        text = (spec.log_dir / "launcher.0.log").read_text(errors="replace").splitlines()
        err.details = ["last lines of launcher.0.log:"] + [f"  {t}" for t in text[-10:]]
    if res.survivors:
        err = RunFailed("orphans", f"{res.message}; {len(res.survivors)} process(es) survived cleanup: "
                        + "; ".join(res.survivors))
    return err


_ADVICE = {
    "hang": "a rank stopped making progress: read its log tail below; the watchdog killed every rank",
    "timeout": "the run outlived its time limit: look for a slowdown, or raise --timeout",
    "launch_error": "paddle.distributed.launch failed before the ranks ran: read log/launcher.*.log",
    "orphans": "processes escaped cleanup: kill them by pid and report a bug",
}


def judge(plan: Plan, res: launch.LaunchResult, spec: launch.LaunchSpec, a: RunAnalysis,
          baseline: Optional[Baseline], bfile: Path, profile: str, allow_mismatch: bool,
          update_cmd: str) -> tuple[Verdict, list[str]]:
    """Failure first (a NaN outranks a dead rank, a dead rank a missing marker), then the baseline."""
    failure = _launch_failure(res, a, spec)
    if a.failure is not None and (failure is None or a.failure.kind == "nan_loss"):
        failure = a.failure
    if failure is not None:
        verdict = verdict_from_failure(failure, plan.case.id)
        verdict.advice = _ADVICE.get(failure.kind, verdict.advice)
        return verdict, []
    if baseline is None:
        verdict = no_baseline_verdict(plan.case.id, str(bfile))
        run_dir = Path(a.logdir).parent
        verdict.advice = f"record one: {update_cmd} (or keep this run: {update_cmd} --from {run_dir})"
        return verdict, []
    header = (a.logs[0].header if a.logs.get(0) else None) or {}
    warnings = check_compatible(baseline, profile, header.get("paddle_version"), allow_mismatch)
    verdict = compare(a.summary, baseline, plan.case.id)
    if verdict.exit_code and "update-baseline" in verdict.advice:
        verdict.advice = verdict.advice.replace(f"swavbench update-baseline {plan.case.id}", update_cmd)
    return verdict, warnings


def update_command(plan: Plan, baseline_dir: Path) -> str:
    """The exact command that records this case's baseline here."""
    from swavbench.cases import CPU_DATA, cache_dir

    cmd = f"swavbench update-baseline {plan.case.id} --profile {plan.device_profile}"
    if Path(baseline_dir).resolve() != BASELINES_DIR.resolve():
        cmd += f" --baseline-dir {baseline_dir}"
    if plan.data_root and Path(plan.data_root).resolve() != (cache_dir() / CPU_DATA.key).resolve():
        cmd += f" --data-root {plan.data_root}"
    return cmd


def git_commit() -> Optional[str]:
    """Short commit of the project checkout (None outside git or before the first commit)."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def execute(plan: Plan, baseline_dir: Path = BASELINES_DIR, reports_dir: Path = REPORTS_DIR,
            allow_mismatch: bool = False, worker: Optional[Sequence[str]] = None,
            stream: Optional[TextIO] = None, tty: Optional[bool] = None) -> Outcome:
    """Launch the plan, keep its record, judge it against `baseline_dir/<this profile>/<case>.json`."""
    if plan.skip_reason:
        raise SwavbenchError(f"cannot run here: {plan.skip_reason}")
    profile = profile_of(plan)
    bfile = baseline_path(baseline_dir, profile, plan.case.id)
    baseline = load_baseline(bfile) if bfile.exists() else None  # a corrupt file stops us before the run
    run_id = new_run_id(plan.case.id)
    run_dir = Path(reports_dir) / "runs" / run_id
    work = Path(tempfile.mkdtemp(prefix=f"swavbench-{run_id}-"))
    try:
        spec = launch_spec(plan, work, worker)
        progress = launch.Progress(spec.node_dir(spec.node_ranks[0]) / "workerlog.0", plan.case.id,
                                   plan.marker_step, stream or sys.stdout, tty)
        res = launch.run(spec, progress)
        collect_logs(res, spec, run_dir / "log")
        a = _analyse(run_dir / "log", plan)
        header = (a.logs[0].header if a.logs.get(0) else None) or {}
        profile = profile_of(plan, header)
        if profile != bfile.parent.name:  # the trainer ran with other threads/device than planned
            bfile = baseline_path(baseline_dir, profile, plan.case.id)
            baseline = load_baseline(bfile) if bfile.exists() else None
        verdict, warnings = judge(plan, res, spec, a, baseline, bfile, profile, allow_mismatch,
                                  update_command(plan, baseline_dir))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rec = build_record(plan, run_id, res, a, verdict, profile, baseline, bfile)
    write_json_atomic(run_dir / "result.json", rec)
    return Outcome(plan, run_id, run_dir, verdict, rec, bfile, baseline, profile, res, a, warnings)


def _analyse(logdir: Path, plan: Plan) -> RunAnalysis:
    """analyse_logdir, or an empty analysis whose failure says why when no worker log exists."""
    try:
        return analyse_logdir(logdir, plan.marker, plan.warmup_lines, plan.case.metric)
    except RunFailed:
        raise
    except SwavbenchError as err:
        failure = RunFailed("no_records", str(err))
        return RunAnalysis(str(logdir), {}, {}, plan.marker, "given", [], None, failure)


def _rank_rows(res: launch.LaunchResult, a: RunAnalysis) -> list[dict]:
    health = {h.rank: h for h in a.health}
    rows = []
    for r in res.ranks:
        h = health.get(r.rank)
        bad = r.note == "failed" or (h is not None and h.status != "ok")
        rows.append({"rank": r.rank, "node": r.node, "exit_code": r.exit_code,
                     "last_step": h.last_step if h else None,
                     "reached_marker": h.reached_marker if h else None,
                     "status": h.status if h else "no_log", "note": r.note or (h.reason if h else ""),
                     "log_tail": (h.log_tail[-20:] if bad else h.log_tail[-3:]) if h else []})
    return rows


def build_record(plan: Plan, run_id: str, res: launch.LaunchResult, a: RunAnalysis, verdict: Verdict,
                 profile: str, baseline: Optional[Baseline], bfile: Path) -> dict:
    """result.json (docs/design.md), from the plan, the launch, the analysis and the verdict."""
    header = (a.logs[0].header if a.logs.get(0) else None) or {}
    s = a.summary
    env = {k: header.get(k) for k in ("device", "world_size", "nnodes", "precision_requested",
                                       "precision_effective", "precision_note", "threads", "seed",
                                       "max_mem_source")}
    env.update(nproc_per_node=plan.scale.devices_per_node, hostname=socket.gethostname(),
               world_size=env["world_size"] or plan.world_size, nnodes=env["nnodes"] or plan.scale.nnodes,
               topology=f"{plan.scale.nnodes}x{plan.scale.devices_per_node}",
               case_topology=f"{plan.case.gpu.nnodes}x{plan.case.gpu.devices_per_node}")
    failure = None
    if verdict.status == "failed":
        failed_rank = res.failed_rank
        failure = {"kind": verdict.failure_kind, "rank": failed_rank, "message": verdict.message,
                   "log_tail": [d.strip() for d in verdict.details[1:]]}
    rank0_steps = a.steps[0].steps if a.steps.get(0) else []
    rank0 = a.logs.get(0)
    return {
        "schema_version": 1, "run_id": run_id, "case": plan.case.id, "config": plan.config,
        "profile": profile, "device_profile": plan.device_profile,
        "started_utc": _utc(res.started), "finished_utc": _utc(res.finished), "duration_s": res.duration_s,
        "commit": git_commit(), "paddle_version": header.get("paddle_version"),
        "command": res.commands[0] if res.commands else [], "commands": res.commands,
        "environment": env, "status": verdict.status, "exit_code": verdict.exit_code,
        "message": verdict.message, "advice": verdict.advice,
        "metrics": {"marker": s.marker, "loss": s.loss, "ips": s.ips, "max_mem": s.max_mem} if s else
                   {"marker": plan.marker, "loss": None, "ips": None, "max_mem": None},
        "baseline": None if baseline is None else {
            "path": _rel(bfile), "metrics": baseline.metrics, "tolerances": baseline.tolerances,
            "provenance": baseline.provenance},
        "checks": [{k: getattr(c, k) for k in ("metric", "baseline", "measured", "diff", "tolerance", "verdict")}
                   for c in verdict.checks],
        "ranks": _rank_rows(res, a),
        "steps": [dict(step, rank=0) for step in rank0_steps],
        "log_lines": [{"epoch": r.epoch, "iter": r.iter, "loss": r.metrics.get(plan.case.metric), "ips": r.ips,
                       "batch_cost": r.batch_cost, "reader_cost": r.reader_cost}
                      for r in (rank0.records if rank0 else [])],
        "failure": failure,
        "notes": list(plan.notes),
        "resources": {"peak_rss_mb": res.peak_rss_mb, "port_free": res.port_free, "strays": res.strays},
    }


def _utc(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _rel(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON via a temp file in the same folder, fsync, rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
