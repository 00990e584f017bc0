"""`swavbench run CASE [--profile cpu|gpu] [--baseline-dir DIR] [--allow-mismatch] [--json] [-o K=V ...]`.

The CLI twin of the pytest case: launches the case with paddle.distributed.launch, shows live progress on
stderr, keeps `reports/runs/<run-id>/` and judges it against `baselines/<this machine's profile>/<case>.json`.
stdout carries only the verdict: the verdict block, or with `--json` one JSON document (verdict, run record,
baseline, warnings), so `swavbench run CASE --json > verdict.json` keeps the progress on the terminal.
Exit codes as `compare`: 0 pass, 1 regression, 2 run failed, 3 usage/baseline (also: no baseline here, or a
case that cannot run on this build).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from swavbench.harness.cases import DEVICE_PROFILES, plan_for
from swavbench.harness.compare import verdict_to_dict
from swavbench.harness.runner import DEFAULT_CONFIRM, DEFAULT_CONFIRM_DELAY_S, Outcome, execute
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
    parser.add_argument("--json", action="store_true", help="print one JSON verdict document on stdout")
    parser.add_argument(
        "-o",
        "--override",
        action="append",
        default=[],
        metavar="Section.key=value",
        help="extra config override for this run (repeatable)",
    )
    parser.set_defaults(func=run)


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
    plan = plan_for(args.case, args.profile, args.data_root, args.override, timeout_s=args.timeout, stall_s=args.stall)
    outcome = execute(
        plan,
        args.baseline_dir,
        args.reports_dir,
        args.allow_mismatch,
        stream=sys.stderr,  # progress; stdout is the verdict's alone
        confirm=max(args.confirm, 0),
        confirm_delay_s=max(args.confirm_delay, 0.0),
    )
    if args.json:
        print(json.dumps(verdict_document(outcome), indent=2, default=str))
    else:
        print(outcome.text())
    return outcome.exit_code
