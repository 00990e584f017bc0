"""`swavbench report`: import new runs into the history, then write the HTML report.

The report folder (the --out file's) holds index.html and run/<run>.html pages with the runs' logs linked or
copied beside them, so it can be published as it is.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from swavbench.commands.history import add_db_option, print_import_summary
from swavbench.errors import EXIT_OK, from_os_error
from swavbench.paths import home


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `report` (its defaults are in the project home, where `run` keeps its runs)."""
    default_out, default_runs = str(home().report_html), str(home().runs)
    parser = subparsers.add_parser("report", help="write the self-contained HTML report from the history")
    parser.add_argument("--out", default=default_out, help=f"HTML file to write (default {default_out})")
    parser.add_argument("--since", metavar="DATE", help="only runs started at or after DATE (UTC)")
    parser.add_argument("--case", metavar="PATTERN", help="case glob (swav_*) or substring")
    parser.add_argument(
        "--runs", default=default_runs, metavar="DIR",
        help=f"import new run records from DIR first when it exists (default {default_runs}); '' to skip",
    )  # fmt: skip
    parser.add_argument(
        "--run-pages", type=_run_pages, default=None, metavar="N|all",
        help="per-run pages for the last N runs of each case/profile/host, plus every run that did not pass "
        "(default 30; 'all': every run)",
    )  # fmt: skip
    add_db_option(parser)
    parser.set_defaults(func=run)


def _run_pages(text: str) -> object:
    if text == "all":
        return "all"
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of runs or 'all', got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {n}")
    return n


def run(args: argparse.Namespace) -> int:
    """Import, build, print the report's path. Corrupt records are reported and skipped, not fatal; a report
    that cannot be written (disk full, read-only, name too long) is exit 6 and leaves the old one."""
    from swavbench.report import DEFAULT_RUN_PAGES, build_report
    from swavbench.store.history import History

    pages = DEFAULT_RUN_PAGES if args.run_pages is None else (None if args.run_pages == "all" else args.run_pages)
    with History(args.db) as history:
        if args.runs and Path(args.runs).is_dir():
            print_import_summary(history.import_runs(args.runs), history.path)
        try:
            out = build_report(history, args.out, since=args.since, case_pattern=args.case, run_pages=pages)
        except OSError as err:  # disk full, read-only, name too long: exit 6; the old report is kept
            raise from_os_error(err, f"could not write the report {args.out}", "; the old one is unchanged") from None
    print(out)
    return EXIT_OK
