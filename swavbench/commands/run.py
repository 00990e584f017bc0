"""`swavbench run CASE [--profile cpu|gpu] [--baseline-dir DIR] [--allow-mismatch] [-o K=V ...]`.

The CLI twin of the pytest case: launches the case with paddle.distributed.launch, shows live progress,
keeps `reports/runs/<run-id>/` and judges it against `baselines/<this machine's profile>/<case>.json`.
Exit codes as `compare`: 0 pass, 1 regression, 2 run failed, 3 usage/baseline (also: no baseline here, or a
case that cannot run on this build).

`--dry-run` launches nothing: it prints every node's exact launch command and environment, the data the
marker comes from, the marker, the checks and the baseline (works for `--profile gpu` on a CPU-only machine).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from swavbench.harness.cases import DEVICE_PROFILES, Plan, plan_for
from swavbench.harness.runner import DEFAULT_CONFIRM, DEFAULT_CONFIRM_DELAY_S, execute
from swavbench.paths import BASELINES_DIR, REPORTS_DIR


def add_case_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by `run` and `update-baseline` (the pytest plugin has the same ones)."""
    parser.add_argument(
        "--profile",
        choices=DEVICE_PROFILES,
        default=None,
        help="device profile that scales the case (default: gpu if paddle sees one, else cpu)",
    )
    parser.add_argument(
        "--baseline-dir",
        type=Path,
        default=BASELINES_DIR,
        metavar="DIR",
        help="baselines root holding <profile>/<case>.json (default: baselines/)",
    )
    parser.add_argument(
        "--reports-dir",
        type=Path,
        default=REPORTS_DIR,
        metavar="DIR",
        help="where runs/<run-id>/ are kept (default: reports/)",
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
        f"(default {DEFAULT_CONFIRM}; 0 = judge one run)",
    )
    parser.add_argument(
        "--confirm-delay",
        type=float,
        default=DEFAULT_CONFIRM_DELAY_S,
        metavar="S",
        help=f"seconds to wait before a confirmation rerun, past a slow spell of the machine "
        f"(default {DEFAULT_CONFIRM_DELAY_S:g})",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="launch nothing: print every node's launch command and environment, the marker, the checks and "
        "the baseline the run would use",
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


def run(args: argparse.Namespace) -> int:
    plan = plan_for(args.case, args.profile, args.data_root, args.override, timeout_s=args.timeout, stall_s=args.stall)
    if args.dry_run:
        return dry_run(plan, args.baseline_dir)
    outcome = execute(
        plan,
        args.baseline_dir,
        args.reports_dir,
        args.allow_mismatch,
        stream=sys.stdout,
        confirm=max(args.confirm, 0),
        confirm_delay_s=max(args.confirm_delay, 0.0),
    )
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
