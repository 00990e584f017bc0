"""Run one case end to end: launch it, keep its record, judge it against this machine's baseline.

`execute(plan, ...)` launches the case (swavbench.harness.launch), copies the logs into `reports/runs/<run-id>/`
(swavbench.harness.runs), analyses them (swavbench.harness.metrics), judges them against
`baselines/<profile>/<case>.json` (swavbench.harness.compare) and writes result.json. The CLI (`swavbench run`,
`update-baseline`) and the pytest plugin all call it, so they give the same verdict.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional, Sequence, TextIO

from swavbench.errors import EXIT_RUN_FAILED, RunFailed, SwavbenchError
from swavbench.harness import launch, stats
from swavbench.harness.baselines import Baseline, baseline_path, check_compatible, load_baseline, machine_profile
from swavbench.harness.cases import Plan
from swavbench.harness.compare import Verdict, compare, format_table, no_baseline_verdict, verdict_from_failure
from swavbench.harness.metrics import RankHealth, RunAnalysis, analyse_logdir
from swavbench.harness.runs import build_record, collect_logs, new_run_id, write_json_atomic
from swavbench.paths import HOME_ENV, home, project_home


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
    attempts: list = field(default_factory=list)  # every Attempt (more than one after a confirmation)
    ab: Optional[object] = None  # the AbVerdict of an A/B confirmation (swavbench.harness.abverdict)

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    def text(self) -> str:
        """The verdict block: what ran, the table, what happened, what to do, the dead rank's log tail."""
        v, p = self.verdict, self.plan
        lines = [
            f"case {p.case.id} ({p.device_profile}, {p.scale.nnodes}x{p.scale.devices_per_node} ranks, "
            f"marker {p.marker}) vs {self.baseline_file}"
        ]
        lines += [f"note: {n}" for n in p.notes] + self.warnings
        lines += [format_table(v)] if v.checks else []
        for n, a in enumerate(self.attempts if len(self.attempts) > 1 else [], 1):
            s = a.analysis.summary
            fig = (
                f"ips {s.ips:.1f}"
                + (f", steady {s.steady.rate:.1f} (median {s.steady.median:.1f}, IQR {s.steady.iqr_pct:.1f}%)"
                   if s and s.steady else "")
                if s
                else "no figures"
            )
            lines.append(f"attempt {n}: {a.verdict.status} ({fig})")
        if self.ab is not None:
            lines += ["confirmation: " + self.ab.text().splitlines()[0]] + self.ab.text().splitlines()[1:-2]
        lines.append(f"{v.status.upper()}: {v.message}")
        if v.advice:
            lines.append(f"what to do: {v.advice}")
        lines += v.details
        lines.append(f"run record: {self.run_dir}")
        return "\n".join(lines)


def profile_of(plan: Plan, header: Optional[dict] = None) -> str:
    """The baseline profile key of the machine the run ran on: the run header's, else computed here."""
    header = header or {}
    if isinstance(header.get("machine_profile"), str) and header["machine_profile"]:
        return header["machine_profile"]
    threads = header.get("threads") if isinstance(header.get("threads"), int) else plan.threads
    device = header.get("device") or ("cpu" if plan.device_profile == "cpu" else None)
    return machine_profile(threads=threads, device=device)


def launch_spec(plan: Plan, log_dir: Path, worker: Optional[Sequence[str]] = None) -> launch.LaunchSpec:
    """The LaunchSpec of a plan: all nodes here (simulated on 127.0.0.1), or PASSL's cluster env on GPU."""
    cmd = tuple(worker) + tuple(plan.train_args()) if worker else launch.default_worker(plan.train_args())
    fields = dict(
        worker=cmd,
        nproc_per_node=plan.scale.devices_per_node,
        log_dir=log_dir,
        nnodes=plan.scale.nnodes,
        node_ranks=tuple(range(plan.scale.nnodes)),
        threads=plan.threads,
        timeout_s=plan.timeout_s,
        stall_s=plan.stall_s,
        env={**dict(plan.env), HOME_ENV: str(project_home())},  # the ranks record the same project home
    )
    if plan.device_profile == "gpu":
        fields.update(launch.cluster_from_env(os.environ))
    return launch.LaunchSpec(**fields)


def _launch_failure(res: launch.LaunchResult, a: RunAnalysis, spec: launch.LaunchSpec) -> Optional[RunFailed]:
    """The run's failure as the launcher/watchdog saw it, with the guilty rank's log tail."""
    if res.ok and not res.survivors:
        return None
    kinds = {"failed": "rank_died", "stalled": "hang", "timeout": "timeout", "launch_error": "launch_error"}
    err = RunFailed(kinds.get(res.status, res.status), res.message)
    rank = res.failed_rank if res.failed_rank is not None else 0
    health = next((h for h in a.health if h.rank == rank), None) if a else None
    first = _first_cause(a, health) if res.status == "failed" else None
    if first is not None:  # the rank launch named only lost a peer: the logs name the rank that died first
        rank, health = first.rank, first
        res.failed_rank = rank  # the run record names it too
        err = RunFailed("rank_died", f"rank {rank} died first ({first.reason}), then {res.message}")
    elif res.status == "failed" and health is not None and health.reason:
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
        err = RunFailed(
            "orphans", f"{res.message}; {len(res.survivors)} process(es) survived cleanup: " + "; ".join(res.survivors)
        )
    return err


def _first_cause(a: Optional[RunAnalysis], reported: Optional[RankHealth]) -> Optional[RankHealth]:
    """When the reported rank aborted on a collective error, the rank that crashed or died silently first."""
    if a is None or reported is None or reported.status != "peer_abort":
        return None
    causes = [h for h in a.health if h.status in ("crashed", "killed") and h.rank != reported.rank]
    return min(causes, key=lambda h: (h.status != "crashed", h.rank)) if causes else None


_ADVICE = {
    "hang": "a rank stopped making progress: read its log tail below; the watchdog killed every rank",
    "timeout": "the run outlived its time limit: look for a slowdown, or raise --timeout",
    "launch_error": "paddle.distributed.launch failed before the ranks ran: read log/launcher.*.log",
    "orphans": "processes escaped cleanup: kill them by pid and report a bug",
}


def judge(
    plan: Plan,
    res: launch.LaunchResult,
    spec: launch.LaunchSpec,
    a: RunAnalysis,
    baseline: Optional[Baseline],
    bfile: Path,
    profile: str,
    allow_mismatch: bool,
    update_cmd: str,
) -> tuple[Verdict, list[str]]:
    """Failure first (a NaN outranks a dead rank, a dead rank a missing marker), then the baseline."""
    if res.ok and a.logs.get(0) is None and res.ranks and all(r.rank != 0 for r in res.ranks):
        ranks = f"{res.ranks[0].rank}-{res.ranks[-1].rank}"
        return Verdict(
            "pass",
            [],
            f"this node's ranks {ranks} exited 0; rank 0 runs on another node, which judges the run",
            "read the verdict on the node that hosts rank 0",
            0,
            plan.case.id,
        ), []
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
    from swavbench.harness.prepare import cache_dir

    cmd = f"swavbench update-baseline {plan.case.id} --profile {plan.device_profile}"
    if Path(baseline_dir).resolve() != home().baselines.resolve():
        cmd += f" --baseline-dir {baseline_dir}"
    if plan.data_root and Path(plan.data_root).resolve() != (cache_dir() / plan.case.cpu_data.key).resolve():
        cmd += f" --data-root {plan.data_root}"
    return cmd


DEFAULT_CONFIRM = 1  # reruns when ips alone is outside its band (issue 6)
# How an ips-only failure is confirmed (issue 12): "ab" = a paired A/B against the baseline's own build
# when its provenance lets the harness rebuild it (else as "rerun"); "rerun" = rerun after a pause, every
# run outside the band; "off" = judge the first run alone.
CONFIRM_MODES = ("ab", "rerun", "off")
DEFAULT_CONFIRM_MODE = "ab"
# Seconds to wait before a confirmation rerun (CLI and pytest plugin default). This VM has slow spells of
# about a minute (6-19% slower; docs/verdicts.md): a rerun started at once shares the spell.
DEFAULT_CONFIRM_DELAY_S = 30.0
IPS_METRICS = ("ips", "ips_steady")


@dataclass
class Attempt:
    """One launch of a plan, analysed and judged."""

    res: launch.LaunchResult
    analysis: RunAnalysis
    verdict: Verdict
    warnings: list[str]
    profile: str
    bfile: Path
    baseline: Optional[Baseline]


def _attempt(
    plan: Plan,
    baseline_dir: Path,
    log_dest: Path,
    allow_mismatch: bool,
    worker: Optional[Sequence[str]],
    stream: Optional[TextIO],
    tty: Optional[bool],
) -> Attempt:
    """Launch once into a temp dir, copy the logs to `log_dest`, analyse and judge them."""
    profile = profile_of(plan)
    bfile = baseline_path(baseline_dir, profile, plan.case.id)
    baseline = load_baseline(bfile) if bfile.exists() else None  # a corrupt file stops us before the run
    work = Path(tempfile.mkdtemp(prefix="swavbench-"))
    try:
        spec = launch_spec(plan, work, worker)
        progress = launch.Progress(
            spec.node_dir(spec.node_ranks[0]) / "workerlog.0", plan.case.id, plan.marker_step, stream or sys.stdout, tty
        )
        res = launch.run(spec, progress)
        collect_logs(res, spec, log_dest)
        a = _analyse(log_dest, plan)
        header = (a.logs[0].header if a.logs.get(0) else None) or {}
        profile = profile_of(plan, header)
        if profile != bfile.parent.name:  # the trainer ran with other threads/device than planned
            bfile = baseline_path(baseline_dir, profile, plan.case.id)
            baseline = load_baseline(bfile) if bfile.exists() else None
        verdict, warnings = judge(
            plan, res, spec, a, baseline, bfile, profile, allow_mismatch, update_command(plan, baseline_dir)
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Attempt(res, a, verdict, warnings, profile, bfile, baseline)


def needs_confirmation(v: Verdict) -> bool:
    """A regression on ips alone: worth a rerun. A loss or memory mismatch is never confirmed away."""
    failed = [c.metric for c in v.checks if c.verdict == "fail"]
    return v.status == "regression" and bool(failed) and all(m in IPS_METRICS for m in failed)


def ips_reported_not_gated(v: Verdict, why: str) -> Verdict:
    """An ips-only regression turned into a pass whose ips rows say "info (not gated)", and why.

    For a baseline that is a run of the same code on this machine minutes earlier (the test suite's session
    baselines): an ips difference there can only be the machine's speed moving, never the code.
    """
    if not needs_confirmation(v):
        return v
    checks = [
        replace(c, verdict="info", tolerance=f"{c.tolerance} (not gated)")
        if c.metric in IPS_METRICS and c.verdict == "fail" else c
        for c in v.checks
    ]  # fmt: skip
    return replace(v, status="pass", checks=checks, exit_code=0, advice="",
                   message=f"loss and memory exact; {v.message}: reported, not gated ({why})")


def _ips_direction(v: Verdict) -> int:
    """-1 / +1 when this attempt's ips is below / above its band, 0 when inside."""
    for c in v.checks:
        if c.metric in IPS_METRICS and c.verdict == "fail" and c.diff.endswith("%"):
            return -1 if c.diff.startswith("-") else 1
    return 0


def combine(attempts: list[Attempt], case_id: str) -> Verdict:
    """The verdict on all attempts: confirmed only when every attempt is outside the band on the same side.

    The figure shown and judged is the pooled one (steady steps of every attempt, or the mean of their ips);
    an attempt inside its band (a slow spell of the machine passed) means "not confirmed": a pass.
    """
    first = attempts[0]
    sums = [a.analysis.summary for a in attempts]
    steadies = [s.steady for s in sums if s.steady is not None]
    merged = replace(
        sums[0],
        ips=sum(s.ips for s in sums) / len(sums),
        steady=stats.pooled(steadies) if len(steadies) == len(sums) else None,
    )
    v = compare(merged, first.baseline, case_id)
    sides = {_ips_direction(a.verdict) for a in attempts}
    last = attempts[-1].verdict
    if v.status == "regression" and (len(sides) > 1 or 0 in sides) and last.status == "pass":
        v = replace(last, checks=list(last.checks))  # the rerun inside the band: the first was a spell
    word = "confirmed" if v.status == "regression" else "not confirmed"
    shown = [
        f"{a.analysis.summary.steady.rate:.1f}" if a.analysis.summary.steady else f"{a.analysis.summary.ips:.1f}"
        for a in attempts
    ]
    v.message = (
        f"{word} over {len(attempts)} runs (ips {', '.join(shown)}; a regression needs every run outside the "
        f"band, on the same side): " + v.message
    )
    return v


def attempt_row(n: int, a: Attempt) -> dict:
    """One entry of result.json `attempts`."""
    s = a.analysis.summary
    return {
        "attempt": n,
        "status": a.verdict.status,
        "message": a.verdict.message,
        "failure_kind": a.verdict.failure_kind,
        "loss": s.loss if s else None,
        "ips": s.ips if s else None,
        "steady": s.steady.as_dict() if s and s.steady else None,
        "checks": [{k: getattr(c, k) for k in ("metric", "diff", "verdict")} for c in a.verdict.checks],
        "log_dir": "log" if n == 1 else f"attempts/{n}/log",
        "duration_s": a.res.duration_s,
    }


def execute(
    plan: Plan,
    baseline_dir: Optional[Path] = None,
    reports_dir: Optional[Path] = None,
    allow_mismatch: bool = False,
    worker: Optional[Sequence[str]] = None,
    stream: Optional[TextIO] = None,
    tty: Optional[bool] = None,
    confirm: int = DEFAULT_CONFIRM,
    confirm_delay_s: float = 0.0,
    ips_gate: Optional[str] = None,
    confirm_mode: str = "rerun",
    ab_settings: Optional[object] = None,
) -> Outcome:
    """Launch the plan, keep its record, judge it against `baseline_dir/<this profile>/<case>.json`.

    When ips alone is outside its band: with `confirm_mode` "ab" and a baseline whose build can be rebuilt,
    a paired A/B against that build decides (`confirm_by_ab`); otherwise wait `confirm_delay_s`, rerun (up
    to `confirm` times; logs of rerun k in `attempts/<k>/log`) and judge with `combine`. A loss change or a
    failed rerun decides at once. "off", or confirm 0 in either mode, judges the first run alone.
    `ips_gate="<why>"` reports ips without gating it (no confirmation; see `ips_reported_not_gated`).
    """
    if plan.skip_reason:
        raise SwavbenchError(f"cannot run here: {plan.skip_reason}")
    if confirm_mode not in CONFIRM_MODES:
        raise SwavbenchError(f"confirmation mode {confirm_mode!r}: use one of {', '.join(CONFIRM_MODES)}")
    baseline_dir = home().baselines if baseline_dir is None else baseline_dir
    reports_dir = home().reports if reports_dir is None else reports_dir
    run_id = new_run_id(plan.case.id)
    run_dir = Path(reports_dir) / "runs" / run_id
    attempts = [_attempt(plan, baseline_dir, run_dir / "log", allow_mismatch, worker, stream, tty)]
    verdict = attempts[0].verdict
    if ips_gate is not None:
        verdict = ips_reported_not_gated(verdict, ips_gate)
    if confirm_mode == "off" or confirm <= 0:
        confirm_mode, confirm = "off", 0  # confirm 0 (`--confirm 0`): no confirmation of either kind
    ab_verdict, confirmation = None, None
    if confirm_mode == "ab" and needs_confirmation(verdict):
        ab_verdict, confirmation, decided = confirm_by_ab(plan, attempts[0], run_dir, stream, ab_settings, worker)
        if decided is not None:
            verdict, confirm = decided, 0
        else:
            attempts[0].warnings.append(f"note: {confirmation['fallback']}: confirming by a rerun instead")
    while needs_confirmation(verdict) and len(attempts) <= confirm:
        out = stream or sys.stdout
        wait = f" in {confirm_delay_s:g} s" if confirm_delay_s > 0 else ""
        out.write(f"[{plan.case.id}] {verdict.message}: rerunning to confirm{wait} ({len(attempts)}/{confirm})\n")
        out.flush()
        if confirm_delay_s > 0:
            time.sleep(confirm_delay_s)
        n = len(attempts) + 1
        nxt = _attempt(plan, baseline_dir, run_dir / "attempts" / str(n) / "log", allow_mismatch, worker, stream, tty)
        attempts.append(nxt)
        if nxt.verdict.status == "failed" or not needs_confirmation(nxt.verdict) and nxt.verdict.exit_code:
            verdict = nxt.verdict  # the rerun crashed, or changed loss/memory: that decides
            verdict.message = f"rerun {n}: {verdict.message}"
            break
        verdict = combine(attempts, plan.case.id)
    a = attempts[0]
    rec = build_record(plan, run_id, a.res, a.analysis, verdict, a.profile, a.baseline, a.bfile)
    if len(attempts) > 1:
        rec["attempts"] = [attempt_row(i, x) for i, x in enumerate(attempts, 1)]
    if confirmation is not None:
        rec["confirmation"] = confirmation
    if ab_verdict is not None:
        rec["ab"] = ab_verdict.as_dict()
    write_json_atomic(run_dir / "result.json", rec)
    return Outcome(plan, run_id, run_dir, verdict, rec, a.bfile, a.baseline, a.profile, a.res, a.analysis,
                   a.warnings, attempts, ab_verdict)  # fmt: skip


def confirm_by_ab(
    plan: Plan,
    first: Attempt,
    run_dir: Path,
    stream: Optional[TextIO],
    ab_settings: Optional[object],
    worker: Optional[Sequence[str]] = None,
) -> tuple[Optional[object], dict, Optional[Verdict]]:
    """An A/B of the working tree against the baseline's own build, judged with the baseline's band.

    Returns (the AbVerdict or None, the record's `confirmation` entry, the verdict it decides or None).
    None means: fall back to the rerun (no rebuildable reference; the reference failed or does not
    reproduce the loss the candidate and the baseline agree on); the entry's `fallback` says why.
    """
    import contextlib

    from swavbench.harness.ab import run_ab
    from swavbench.harness.abjobs import sigterm_as_exit
    from swavbench.harness.absession import Settings
    from swavbench.harness.builds import checkout, reference_for

    ref = reference_for(first.baseline.provenance)
    entry = {"mode": "ab", "reference": ref.ref, "reference_python": ref.python, "why": ref.why}
    if ref.ref is None:
        return None, {**entry, "fallback": f"no A/B: {ref.why}"}, None
    out = stream or sys.stdout
    out.write(f"[{plan.case.id}] {first.verdict.message}: confirming by a paired A/B against the baseline's "
              f"build ({ref.why})\n")  # fmt: skip
    band = float(first.baseline.tolerances.get("ips_pct", plan.tolerances.ips_pct))
    settings = replace(ab_settings if isinstance(ab_settings, Settings) else Settings(), band_pct=band,
                       stall_s=plan.stall_s)
    try:
        with sigterm_as_exit(), contextlib.ExitStack() as stack:
            cand = stack.enter_context(checkout(""))
            refb = stack.enter_context(checkout(ref.ref, python=ref.python))
            abv = run_ab(plan, refb, cand, settings, run_dir / "ab", out, worker)
    except SwavbenchError as err:  # e.g. the recorded interpreter cannot import paddle any more
        return None, {**entry, "fallback": f"the A/B could not start ({err})"}, None
    return abv, {**entry, "status": abv.status}, ab_decision(first.verdict, abv)


def ab_decision(first: Verdict, abv) -> Optional[Verdict]:
    """The case's verdict from an A/B confirmation of an ips-only failure, or None (fall back to a rerun).

    regression / improvement: confirmed (exit 1, as check_result fails a speed-up too); no change or
    inconclusive: not confirmed, a pass (a regression must be shown, as with reruns); the candidate failed:
    failed; the reference failed, or the sides' losses / memory differ (then the reference is not the build
    the baseline was recorded from, since the candidate's first run matched the baseline): None.
    """
    if abv.status == "failed":
        if abv.failed_side != "cand":
            return None
        return Verdict("failed", first.checks, f"the candidate failed during the A/B confirmation: {abv.message}",
                       abv.advice, EXIT_RUN_FAILED, first.case, "ab_failed")  # fmt: skip
    if abv.status == "changed":
        return None
    interval = abv.decision.interval_text() if abv.decision else "no pairs"
    if abv.status in ("regression", "improvement"):
        return replace(first, message=f"confirmed by a paired A/B against the baseline's build "
                       f"({abv.ref.describe()}): {abv.message}; first run: {first.message}",
                       advice=abv.advice, checks=list(first.checks))  # fmt: skip
    word = "no change" if abv.status == "no_change" else "inconclusive"
    checks = [replace(c, verdict="pass", tolerance=f"{c.tolerance} (A/B: {word})")
              if c.metric in IPS_METRICS and c.verdict == "fail" else c for c in first.checks]  # fmt: skip
    return Verdict("pass", checks, f"not confirmed: a paired A/B against the baseline's build "
                   f"({abv.ref.describe()}) shows {word} ({interval}, band ±{abv.settings.band_pct:g}%); the first "
                   f"run's ips difference was this machine's, not the code's ({first.message})",
                   "" if word == "no change" else abv.advice, 0, first.case)  # fmt: skip


def _analyse(logdir: Path, plan: Plan) -> RunAnalysis:
    """analyse_logdir, or an empty analysis whose failure says why when no worker log exists."""
    try:
        return analyse_logdir(logdir, plan.marker, plan.warmup_lines, plan.case.metric)
    except RunFailed:
        raise
    except SwavbenchError as err:
        failure = RunFailed("no_records", str(err))
        return RunAnalysis(str(logdir), {}, {}, plan.marker, "given", [], None, failure)
