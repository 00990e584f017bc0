"""`swavbench` command line: a thin front over library calls.

Each subcommand lives in `swavbench/commands/<name>.py` and exposes `register(subparsers)`, which adds its
parser and sets `func=run`, and `run(args) -> int` (the exit code). A `SwavbenchError` is printed as one
line `swavbench: error: ...` on stderr and its exit code returned; no traceback. A reader that closes the
pipe early (`swavbench cases --json | head`) ends the command quietly with exit 141 (128 + SIGPIPE, as a
shell reports it), not a BrokenPipeError traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Optional, Sequence

from swavbench import __version__
from swavbench.errors import EXIT_USAGE, SwavbenchError

EXIT_CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell shows for `cmd | head` when head stops reading

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
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def version_text() -> str:
    """`swavbench X.Y.Z (python A.B.C)`; paddle is not imported (its version is in every run header)."""
    return f"swavbench {__version__} (python {sys.version.split()[0]})"


def _closed_pipe() -> int:
    """stdout's reader went away: point stdout at /dev/null so the exit flush cannot raise again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return EXIT_CLOSED_PIPE


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `swavbench` console script."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handler, not at interpreter exit
        return code
    except BrokenPipeError:
        return _closed_pipe()
    except SwavbenchError as err:
        print(f"swavbench: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("swavbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
