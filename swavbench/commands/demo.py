"""`swavbench demo`: the main job of `make demo`, on a plain CPU machine.

Makes (once) the synthetic dataset, runs the swav_pt_1n8c_fp16o1 case with the CPU profile as 8 gloo ranks
through paddle.distributed.launch, judges it against this machine's baseline, leaves the worker logs in
./log (as a PASSL launch does), records the run in the history and writes the HTML report.

A machine with no baseline of its own (a new CPU, another thread count) first records one for its profile
from a run, then runs the case again and judges that rerun: the demo always ends with a verdict.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

DEMO_CASE = "swav_pt_1n8c_fp16o1"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help=f"run {DEMO_CASE} on CPU (8 gloo ranks) and write the HTML report")
    parser.add_argument("--log-dir", type=Path, default=Path("log"), help="where to leave workerlog.* (default ./log)")
    parser.add_argument("--report", type=Path, default=None, help="report path (default reports/index.html)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from swavbench.commands.run import execute_or_record
    from swavbench.harness.cases import plan_for
    from swavbench.harness.runner import DEFAULT_CONFIRM_DELAY_S
    from swavbench.paths import BASELINES_DIR, DEFAULT_DB, REPORTS_DIR
    from swavbench.report import build_report
    from swavbench.store.history import History

    plan = plan_for(DEMO_CASE, "cpu")
    outcomes = execute_or_record(
        plan, BASELINES_DIR, REPORTS_DIR, record_missing=True, stream=sys.stdout,
        confirm_delay_s=DEFAULT_CONFIRM_DELAY_S,
    )  # fmt: skip
    outcome = outcomes[-1]
    print(outcome.text())

    # leave the worker logs where a PASSL launch leaves them
    if args.log_dir.exists():
        shutil.rmtree(args.log_dir)
    shutil.copytree(outcome.run_dir / "log", args.log_dir)
    logs = sorted(p.name for p in args.log_dir.glob("workerlog.*"))
    print(f"worker logs: {args.log_dir}/ ({', '.join(logs)})")

    report_path = args.report or REPORTS_DIR / "index.html"
    with History(DEFAULT_DB) as history:
        history.import_runs(REPORTS_DIR / "runs")
        path = build_report(history, report_path)
    both = " (it shows both runs: the one that recorded the baseline and the judged rerun)" if len(outcomes) > 1 else ""
    print(f"report: {path.resolve()}{both}")
    return outcome.exit_code
