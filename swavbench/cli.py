"""`swavbench` command line: a thin front over library calls.

Each subcommand lives in `swavbench/commands/<name>.py` and exposes `register(subparsers)`, which adds its
parser and sets `func=run`, and `run(args) -> int` (the exit code). A `SwavbenchError` is printed as one
line `swavbench: error: ...` on stderr and its exit code returned; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Optional, Sequence

from swavbench.errors import EXIT_USAGE, SwavbenchError

# Order here is the order in `swavbench --help`.
COMMAND_MODULES = [
    "swavbench.commands.demo",
    "swavbench.commands.train",
    "swavbench.commands.eval",
    "swavbench.commands.data",
    "swavbench.commands.parse",
    "swavbench.commands.compare",
    "swavbench.commands.run",
    "swavbench.commands.cases_cmd",
    "swavbench.commands.update_baseline",
    "swavbench.commands.calibrate",
    "swavbench.commands.determinism",
    "swavbench.commands.ab",
    "swavbench.commands.history",
    "swavbench.commands.report",
]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 by default; usage errors are 3 here
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered subcommand."""
    parser = _Parser(prog="swavbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `swavbench` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except SwavbenchError as err:
        print(f"swavbench: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("swavbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
