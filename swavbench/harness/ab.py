"""Paired A/B verdicts: run a case's reference and candidate builds in turns and judge the paired ratio.

`run_ab(plan, ref, cand, settings, dest)` is what `swavbench ab` and the nightly confirmation
(`swavbench run --confirm-mode ab`) call: the two builds (swavbench.harness.builds) run as two live jobs
taking turns (swavbench.harness.absession), their logs are kept in `dest/<side>/log`, and the session is
judged (swavbench.harness.abverdict: regression / improvement / no change / inconclusive, or "changed"
when a loss or the memory differs). `ab_record` is the run record of a standalone A/B.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence, TextIO

from swavbench.harness.abjobs import sigterm_as_exit
from swavbench.harness.absession import Settings, make_jobs, run_session
from swavbench.harness.abverdict import AbVerdict, judge
from swavbench.harness.builds import Build
from swavbench.harness.cases import Plan
from swavbench.harness.runs import collect_logs, git_commit


def run_ab(
    plan: Plan,
    ref: Build,
    cand: Build,
    settings: Settings,
    dest: Path,
    stream: Optional[TextIO] = None,
    worker: Optional[Sequence[str]] = None,
) -> AbVerdict:
    """One A/B session of `plan` between two builds; logs into `dest/{ref,cand}/log`; the verdict.

    `worker` replaces both sides' rank command (a stand-in worker, as `execute(worker=...)`)."""
    out = stream or sys.stdout
    out.write(f"[{plan.case.id}] A/B: ref {ref.describe()} vs cand {cand.describe()}: two live jobs taking turns "
              f"in blocks of {settings.block_steps} steps (balanced order), up to {settings.max_pairs} pairs\n")
    out.flush()
    work = Path(tempfile.mkdtemp(prefix="swavbench-ab-run-"))
    try:
        with sigterm_as_exit():
            ref_job, cand_job = make_jobs(plan, ref, cand, settings, work, worker)
            session = run_session(ref_job, cand_job, settings, out, plan.case.id)
        verdict = judge(plan.case.id, session, ref, cand, settings)
        for name, job in session.jobs.items():
            if job.result is not None:
                collect_logs(job.result, job.spec, Path(dest) / name / "log")
                verdict.log_dirs[name] = str(Path(dest) / name / "log")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return verdict


def ab_record(plan: Plan, run_id: str, verdict: AbVerdict, started: float, argv: Sequence[str]) -> dict:
    """result.json of a standalone `swavbench ab` (kind "ab"; the A/B itself under `ab`)."""
    from swavbench.harness.runner import profile_of
    from swavbench.harness.runs import _utc

    status = {"no_change": "pass", "failed": "failed", "inconclusive": "inconclusive"}.get(verdict.status, "regression")
    return {
        "schema_version": 1,
        "kind": "ab",
        "run_id": run_id,
        "case": plan.case.id,
        "config": plan.config,
        "profile": profile_of(plan),
        "device_profile": plan.device_profile,
        "started_utc": _utc(started),
        "finished_utc": _utc(time.time()),
        "duration_s": round(time.time() - started, 3),
        "commit": verdict.cand.commit[:7] if verdict.cand.commit else git_commit(),
        "command": list(argv),
        "status": status,
        "exit_code": verdict.exit_code,
        "message": verdict.message,
        "advice": verdict.advice,
        "metrics": {"marker": None, "loss": None, "ips": None, "max_mem": None},
        "checks": [dict(zip(("metric", "baseline", "measured", "diff", "tolerance", "verdict"), r))
                   for r in verdict.rows],  # fmt: skip
        "ab": verdict.as_dict(),
        "notes": list(plan.notes),
    }
