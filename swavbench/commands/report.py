"""`swavbench report`: import new runs into the history, then write the one-file HTML report."""

from __future__ import annotations

import argparse
from pathlib import Path

from swavbench.commands.history import add_db_option, print_import_summary
from swavbench.errors import EXIT_OK, from_os_error

DEFAULT_OUT = "reports/index.html"
DEFAULT_RUNS = "reports/runs"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `report`."""
    parser = subparsers.add_parser("report", help="write the self-contained HTML report from the history")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"HTML file to write (default {DEFAULT_OUT})")
    parser.add_argument("--since", metavar="DATE", help="only runs started at or after DATE (UTC)")
    parser.add_argument("--case", metavar="PATTERN", help="case glob (swav_*) or substring")
    parser.add_argument(
        "--runs", default=DEFAULT_RUNS, metavar="DIR",
        help=f"import new run records from DIR first when it exists (default {DEFAULT_RUNS}); '' to skip",
    )  # fmt: skip
    add_db_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Import, build, print the report's path. Corrupt records are reported and skipped, not fatal; a report
    that cannot be written (disk full, read-only, name too long) is exit 6 and leaves the old one."""
    from swavbench.report import build_report
    from swavbench.store.history import History

    with History(args.db) as history:
        if args.runs and Path(args.runs).is_dir():
            print_import_summary(history.import_runs(args.runs), history.path)
        try:
            out = build_report(history, args.out, since=args.since, case_pattern=args.case)
        except OSError as err:  # disk full, read-only, name too long: exit 6; the old report is kept
            raise from_os_error(err, f"could not write the report {args.out}", "; the old one is unchanged") from None
    print(out)
    return EXIT_OK
