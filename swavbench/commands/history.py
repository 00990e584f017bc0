"""`swavbench history import DIR...`, `history list` and `history check`: the SQLite run history.

`import` finds every result.json under each DIR at any depth (run folders of several machines, rsynced or
downloaded as CI artefacts into one tree) and reads only the files it has not imported before.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

from swavbench.errors import EXIT_OK, EXIT_USAGE, SwavbenchError
from swavbench.inputs import cut
from swavbench.paths import home

if TYPE_CHECKING:  # pandas and the history store load only when a history command runs
    from swavbench.store.history import ImportSummary

LIST_COLUMNS = ["started_utc", "case", "profile", "host", "status", "ips", "loss", "max_mem", "commit", "run_id"]


def add_db_option(parser: argparse.ArgumentParser) -> None:
    """`--db URL`: shared by history and report."""
    default = str(home().history_db)  # the project home's (see swavbench.paths)
    parser.add_argument(
        "--db", default=default, metavar="URL",
        help=f"history database: a path or sqlite:///path (default {default})",
    )  # fmt: skip


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `history` with its `import` and `list` subcommands."""
    parser = subparsers.add_parser("history", help="store run records in the SQLite history and list them")
    sub = parser.add_subparsers(dest="history_command", metavar="ACTION")
    sub.required = True
    imp = sub.add_parser("import", help="import every result.json under DIR... (recursive, incremental)")
    imp.add_argument(
        "runs_dirs", nargs="+", metavar="DIR",
        help="folders holding run folders <run-id>/result.json at any depth (e.g. one per CI machine)",
    )  # fmt: skip
    add_db_option(imp)
    imp.set_defaults(func=run)
    lst = sub.add_parser("list", help="list stored runs, oldest first")
    lst.add_argument("--since", metavar="DATE", help="only runs started at or after DATE (UTC)")
    lst.add_argument("--case", metavar="PATTERN", help="case glob (swav_*) or substring")
    lst.add_argument("--limit", type=int, default=50, help="show the newest N runs (default 50; 0 = all)")
    add_db_option(lst)
    lst.set_defaults(func=run)
    chk = sub.add_parser("check", help="exit 1 when a case's ips drifted over runs that each passed")
    chk.add_argument(
        "--threshold", type=float, default=None, metavar="PCT",
        help="smallest lasting level change that counts as drift (default 3%%)",
    )  # fmt: skip
    chk.add_argument("--case", metavar="PATTERN", help="case glob (swav_*) or substring")
    add_db_option(chk)
    chk.set_defaults(func=run)


def print_import_summary(summary: ImportSummary, db: str) -> None:
    """The summary line on stdout; each skipped file and warning on stderr."""
    for path, reason in summary.failed:
        print(f"swavbench: skipped corrupt run record {cut(path)}: {cut(reason)}", file=sys.stderr)
    for warning in summary.warnings:
        print(f"swavbench: warning: {cut(warning)}", file=sys.stderr)
    print(f"{summary.line()} into {db}")


def check(history: object, args: argparse.Namespace) -> int:
    """`history check`: print each drift; exit 1 if any (re-record the baseline to acknowledge one)."""
    from swavbench.harness.drift import DEFAULT_DRIFT_PCT, check_history

    threshold = DEFAULT_DRIFT_PCT if args.threshold is None else args.threshold
    if not (math.isfinite(threshold) and 0 < threshold < 100):
        raise SwavbenchError(f"--threshold {threshold:g}: give a percentage between 0 and 100 (e.g. 3)")
    found = check_history(history, threshold, args.case)
    for f in found:
        print(f.line())
    if not found:
        print(f"no drift of {threshold:g}% or more in the passing runs since each case's current baseline")
        return EXIT_OK
    print("what to do: find the change in the commits since the first drifted run; if intended, re-record "
          "the baseline (swavbench update-baseline CASE), which acknowledges the drift")
    return 1


def run(args: argparse.Namespace) -> int:
    """Run `history import` or `history list`; corrupt records make `import` exit 3 (after the rest)."""
    from swavbench.store.history import History

    if args.history_command == "list" and args.limit < 0:
        raise SwavbenchError(f"--limit {args.limit}: give N >= 0 (0 = all)")
    with History(args.db) as history:
        if args.history_command == "check":
            return check(history, args)
        if args.history_command == "import":
            summary = history.import_runs(*args.runs_dirs)
            print_import_summary(summary, history.path)
            return EXIT_USAGE if summary.failed else EXIT_OK
        frame = history.runs(args.since, args.case)
    if args.limit:
        frame = frame.tail(args.limit)
    if frame.empty:
        print("no runs in history")
        return EXIT_OK
    import pandas as pd

    with pd.option_context("display.width", 200, "display.max_columns", None, "display.max_rows", None):
        print(frame[LIST_COLUMNS].to_string(index=False, na_rep="-"))
    return EXIT_OK
