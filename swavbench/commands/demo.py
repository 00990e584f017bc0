"""`swavbench demo`: the main job of `make demo`, on a plain CPU machine.

Makes (once) the synthetic dataset, runs the swav_pt_1n8c_fp16o1 case with the CPU profile as 8 gloo ranks
through paddle.distributed.launch, judges it against this machine's baseline, leaves the worker logs in
./log (as a PASSL launch does), records the run in the history and writes the HTML report.
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
    from swavbench.harness.cases import plan_for
    from swavbench.harness.runner import execute
    from swavbench.paths import DEFAULT_DB, REPORTS_DIR
    from swavbench.report import build_report
    from swavbench.store.history import History

    plan = plan_for(DEMO_CASE, "cpu")
    outcome = execute(plan, stream=sys.stdout)
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
    print(f"report: {path.resolve()}")
    # a fresh machine has no baseline of its own yet: that is the expected first result of a demo
    return 0 if outcome.verdict.status in ("pass", "no_baseline") else outcome.exit_code
