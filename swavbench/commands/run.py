"""`swavbench run CASE [--profile cpu|gpu] [--baseline-dir DIR] [--allow-mismatch] [--json] [-o K=V ...]`.

The CLI twin of the pytest case: launches the case with paddle.distributed.launch, shows live progress on
stderr, keeps `reports/runs/<run-id>/` and judges it against `baselines/<this machine's profile>/<case>.json`.
stdout carries only the verdict: the verdict block, or with `--json` one JSON document (verdict, run record,
baseline, warnings), so `swavbench run CASE --json > verdict.json` keeps the progress on the terminal.
Exit codes as `compare`: 0 pass, 1 regression, 2 run failed, 3 usage/baseline (also: no baseline here, or a
case that cannot run on this build).

An ips-only failure is confirmed (`--confirm-mode`): by default with a paired A/B against the baseline's own
build (its recorded commit, or this very tree when its source is unchanged; `swavbench ab`), else by a
rerun after a pause; the A/B runs with the baseline's band and decides: confirmed (regression, or faster)
-> 1; no change or inconclusive -> not confirmed, 0.

`--record-missing`: when this machine's profile has no baseline yet, record one from this run (as
`update-baseline CASE --from <run>` would), then run the case again and judge that rerun. `make demo` and
the test suite's cases (`--swavbench-session-baselines`) work this way, so a new machine always ends with
a verdict.

`--dry-run` launches nothing: it prints every node's exact launch command and environment, the data the
marker comes from, the marker, the checks and the baseline (works for `--profile gpu` on a CPU-only machine).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Optional, TextIO

from swavbench.errors import SwavbenchError
from swavbench.harness.absession import Settings
from swavbench.harness.cases import DEVICE_PROFILES, Plan, plan_for
from swavbench.harness.compare import verdict_to_dict
from swavbench.harness.runner import (
    CONFIRM_MODES,
    DEFAULT_CONFIRM,
    DEFAULT_CONFIRM_DELAY_S,
    DEFAULT_CONFIRM_MODE,
    Outcome,
    execute,
)
from swavbench.paths import home


def add_case_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `run` and `update-baseline` (the pytest plugin has the same ones); the default
    folders are the project home's (swavbench.paths: --home, $SWAVBENCH_HOME, or found from the cwd)."""
    project = home()
    parser.add_argument(
        "--profile",
        choices=DEVICE_PROFILES,
        default=None,
        help="device profile that scales the case (default: gpu if paddle sees one, else cpu)",
    )
    parser.add_argument(
        "--baseline-dir",
        type=Path,
        default=project.baselines,
        metavar="DIR",
        help=f"baselines root holding <profile>/<case>.json (default: {project.baselines})",
    )
    parser.add_argument(
        "--reports-dir",
        type=Path,
        default=project.reports,
        metavar="DIR",
        help=f"where runs/<run-id>/ are kept (default: {project.reports})",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="dataset root (default on cpu: the cached synthetic set)",
    )
    parser.add_argument("--timeout", type=float, default=None, metavar="S", help="limit for the whole run")
    parser.add_argument(
        "--stall",
        type=float,
        default=None,
        metavar="S",
        help="no-progress watchdog: no new log output for S seconds = hang (default 120)",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run a case and judge it against this machine's baseline")
    parser.add_argument("case", help="case id (swav_pt_1n8c_fp16o1, ...) or PASSL long name")
    add_case_options(parser)
    parser.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="compare even if the baseline is from another profile or paddle version",
    )
    parser.add_argument(
        "--confirm",
        type=int,
        default=DEFAULT_CONFIRM,
        metavar="N",
        help=f"when ips alone is outside its band, rerun up to N times; a regression needs every run outside "
        f"(default {DEFAULT_CONFIRM}; 0 = judge one run, no confirmation of either mode)",
    )
    parser.add_argument(
        "--confirm-delay",
        type=float,
        default=DEFAULT_CONFIRM_DELAY_S,
        metavar="S",
        help=f"seconds to wait before a confirmation rerun, past a slow spell of the machine "
        f"(default {DEFAULT_CONFIRM_DELAY_S:g})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON verdict document on stdout")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="launch nothing: print every node's launch command and environment, the marker, the checks and "
        "the baseline the run would use",
    )
    parser.add_argument(
        "--confirm-mode",
        choices=CONFIRM_MODES,
        default=DEFAULT_CONFIRM_MODE,
        help="how an ips-only failure is confirmed: ab = a paired A/B against the baseline's own build when its "
        "provenance can rebuild it (else a rerun), rerun = rerun after --confirm-delay, off = the first run "
        f"decides (default {DEFAULT_CONFIRM_MODE})",
    )
    parser.add_argument(
        "--ab-max-pairs",
        type=int,
        default=Settings().max_pairs,
        metavar="N",
        help=f"A/B confirmation: inconclusive (not confirmed) after N pairs (default {Settings().max_pairs})",
    )
    parser.add_argument(
        "--record-missing",
        action="store_true",
        help="no baseline for this machine's profile yet: record one from this run, then judge a rerun",
    )
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="Section.key=value",
        help="extra config override for this run (repeatable)",
    )
    parser.set_defaults(func=run)


JUST_RECORDED_IPS_NOTE = (
    "the baseline was just recorded from a run of this same code on this machine, so an ips difference is this "
    "machine's speed moving, not the code; later runs are gated against it"
)


def execute_or_record(
    plan: Plan,
    baseline_dir: Path,
    reports_dir: Path,
    record_missing: bool = False,
    stream: Optional[TextIO] = None,
    data_root: Optional[Path] = None,
    **execute_kw,
) -> list[Outcome]:
    """Run and judge `plan`; with `record_missing`, a run that finds no baseline records one and is rerun.

    Returns every outcome, the judged one last: [judged] or [recording run, judged rerun]. A recording run
    that failed is returned alone (nothing is recorded from it). The rerun's loss and memory are judged
    exactly; its ips is reported, not gated (the baseline is a run of the same code minutes earlier).
    """
    from swavbench.commands import update_baseline

    out = stream or sys.stdout
    first = execute(plan, baseline_dir, reports_dir, stream=out, **execute_kw)
    if first.verdict.status != "no_baseline" or not record_missing:
        return [first]
    out.write(f"[{plan.case.id}] no baseline for this machine's profile {first.profile}: recording one from "
              f"run {first.run_id}, then running the case again to judge the rerun\n")
    out.flush()
    args = update_baseline.args_for(
        plan.case.id, "--from", str(first.run_dir), "--profile", plan.device_profile,
        "--baseline-dir", str(baseline_dir), "--reports-dir", str(reports_dir),
        *(["--data-root", str(data_root)] if data_root is not None else []),
    )  # fmt: skip
    with contextlib.redirect_stdout(out):  # the baseline diff is progress too: stdout stays the verdict's
        update_baseline.record(args, plan.case)
    rerun_kw = {"ips_gate": JUST_RECORDED_IPS_NOTE, **execute_kw}  # a caller's own ips_gate wins
    second = execute(plan, baseline_dir, reports_dir, stream=out, **rerun_kw)
    second.warnings.insert(0, f"baseline recorded on {first.profile} from run {first.run_id} (this invocation)")
    return [first, second]


def verdict_document(outcome: Outcome) -> dict:
    """The `run --json` document: what ran, the verdict (as `compare --json` gives it), where the record is."""
    record = outcome.record if isinstance(outcome.record, dict) else {}
    return {
        "schema_version": 1,
        "case": outcome.plan.case.id,
        "profile": outcome.profile,
        "device_profile": outcome.plan.device_profile,
        "run_id": outcome.run_id,
        "run_dir": str(outcome.run_dir),
        "run_record": str(Path(outcome.run_dir) / "result.json"),
        "baseline": str(outcome.baseline_file),
        "baseline_found": outcome.baseline is not None,
        "verdict": verdict_to_dict(outcome.verdict),
        "exit_code": outcome.exit_code,
        "metrics": record.get("metrics"),
        "attempts": record.get("attempts"),
        "warnings": list(outcome.warnings),
        "notes": list(outcome.plan.notes),
    }


def run(args: argparse.Namespace) -> int:
    if args.ab_max_pairs < Settings().min_pairs:
        raise SwavbenchError(f"--ab-max-pairs {args.ab_max_pairs}: the interval needs at least {Settings().min_pairs}")
    plan = plan_for(args.case, args.profile, args.data_root, args.override, timeout_s=args.timeout, stall_s=args.stall)
    if args.dry_run:
        return dry_run(plan, args.baseline_dir)
    outcomes = execute_or_record(
        plan,
        args.baseline_dir,
        args.reports_dir,
        record_missing=args.record_missing,
        stream=sys.stderr,  # progress; stdout is the verdict's alone
        data_root=args.data_root,
        allow_mismatch=args.allow_mismatch,
        confirm=max(args.confirm, 0),
        confirm_delay_s=max(args.confirm_delay, 0.0),
        confirm_mode=args.confirm_mode,
        ab_settings=Settings(max_pairs=args.ab_max_pairs),
    )
    outcome = outcomes[-1]
    if args.json:
        print(json.dumps(verdict_document(outcome), indent=2, default=str))
    else:
        print(outcome.text())
    return outcome.exit_code


def dry_run(plan: Plan, baseline_dir: Path) -> int:
    """Print what `run` would launch and judge (swavbench.harness.dryrun); exit 0, or 3 for a case that
    cannot run on this build."""
    from swavbench.harness.dryrun import describe

    print(describe(plan, baseline_dir))
    if plan.skip_reason:
        print(f"cannot run here: {plan.skip_reason}")
        return 3
    return 0
