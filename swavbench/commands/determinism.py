"""`swavbench determinism CASE [--profile cpu|gpu] [-o K=V ...]`: run a case twice, compare every rank's losses.

Prints "identical for N logged steps" or the first step and rank where the losses differ, with both values.
Exit 0 identical, 1 different, 2 when a run failed. Both runs are kept in reports/runs/ (never judged).
"""

from __future__ import annotations

import argparse
import sys

from swavbench.commands.run import add_case_options
from swavbench.errors import EXIT_REGRESSION, EXIT_RUN_FAILED
from swavbench.harness.cases import plan_for


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("determinism", help="run a case twice and compare every rank's losses")
    parser.add_argument("case", help="case id or PASSL long name")
    add_case_options(parser)
    parser.add_argument("-o", "--override", action="append", default=[], metavar="Section.key=value")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from swavbench.harness.determinism import first_difference
    from swavbench.harness.logparse import read_steps_dir
    from swavbench.harness.runner import execute

    plan = plan_for(args.case, args.profile, args.data_root, args.override, timeout_s=args.timeout, stall_s=args.stall)
    outs = []
    for n in (1, 2):
        out = execute(plan, args.baseline_dir, args.reports_dir, allow_mismatch=True, stream=sys.stdout, confirm=0)
        print(f"run {n}: {out.run_dir} ({out.verdict.status})")
        if out.verdict.status == "failed":
            print(out.text())
            return EXIT_RUN_FAILED
        outs.append(out)
    cmp = first_difference(*(read_steps_dir(o.run_dir / "log") for o in outs))
    print(cmp.text())
    return 0 if cmp.difference is None else EXIT_REGRESSION
