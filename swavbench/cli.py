"""`swavbench` command line: a thin front over library calls.

Each subcommand lives in `swavbench/commands/<name>.py` and exposes `register(subparsers)`, which adds its
parser and sets `func=run`, and `run(args) -> int` (the exit code). A `SwavbenchError` is printed as one
line `swavbench: error: ...` on stderr and its exit code returned; no traceback. A reader that closes the
pipe early (`swavbench cases --json | head`) ends the command quietly with exit 141 (128 + SIGPIPE, as a
shell reports it), not a BrokenPipeError traceback. An environment fault that escaped a command (disk full,
read-only, permission, name too long, sqlite "disk is full") is exit 6 in one line; any other exception is a
swavbench bug: exit 70, one line naming the file the traceback was written to (`--debug` also prints it).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Iterator, Optional, Sequence

from swavbench import __version__, paths
from swavbench.errors import (
    ENVIRONMENT_ERRNOS,
    EXIT_BUG,
    EXIT_ENVIRONMENT,
    EXIT_USAGE,
    SwavbenchError,
    os_error_text,
)
from swavbench.inputs import cut

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
    "swavbench.commands.ab",
    "swavbench.commands.history",
    "swavbench.commands.report",
    "swavbench.commands.env",
]
HOME_HELP = ("project home holding baselines/, reports/, data/cache/ and swavbench.toml (default: $SWAVBENCH_HOME, "
             "else the nearest folder up from here holding swavbench.toml or baselines/, else the current one)")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 by default; usage errors are 3 here
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def _add_home_option(parser: argparse.ArgumentParser, top: bool) -> None:
    """`--home DIR` before or after the subcommand (a subcommand's copy never hides the top-level value)."""
    default = None if top else argparse.SUPPRESS
    parser.add_argument("--home", type=Path, default=default, metavar="DIR", help=HOME_HELP)
    for action in parser._actions:  # argparse keeps subcommands as one _SubParsersAction
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_home_option(child, top=False)


# A training rank parses only its own command: importing every command module (the harness with it) cost
# each of 8 ranks ~80 ms of CPU on 2 shared cores (benchmarks/time_to_verdict.py).
RANK_COMMANDS = {"train": "swavbench.commands.train"}


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The parser with the subcommands of `modules` (default: all; defaults in the current project home)."""
    parser = _Parser(prog="swavbench", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=version_text())
    parser.add_argument("--debug", action="store_true",
                        help="on an unexpected error (a swavbench bug) also print its traceback")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in modules:
        importlib.import_module(name).register(sub)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                _add_home_option(child, top=False)
    parser.add_argument("--home", type=Path, default=None, metavar="DIR", help=HOME_HELP)
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


def home_argument(argv: Sequence[str]) -> Optional[Path]:
    """The `--home DIR` of a command line, wherever it stands (read before the parser sets its defaults)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--home", type=Path, default=None)
    known, _ = pre.parse_known_args(list(argv))
    return known.home


@contextlib.contextmanager
def pinned_home(chosen: Optional[Path]) -> Iterator[Path]:
    """Pin the project home for this command, and pass it to the processes it starts ($SWAVBENCH_HOME)."""
    home = paths.project_home(chosen)
    previous_pin, previous_env = paths.use_home(home), os.environ.get(paths.HOME_ENV)
    os.environ[paths.HOME_ENV] = str(home)
    try:
        yield home
    finally:
        paths.use_home(previous_pin)
        if previous_env is None:
            os.environ.pop(paths.HOME_ENV, None)
        else:
            os.environ[paths.HOME_ENV] = previous_env


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of the `swavbench` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    rank_command = RANK_COMMANDS.get(argv[0]) if argv else None
    with pinned_home(home_argument(argv)):
        return _run(build_parser([rank_command] if rank_command else COMMAND_MODULES), argv)


def _run(parser: argparse.ArgumentParser, argv: Sequence[str]) -> int:
    from swavbench.envcheck import check_command

    args: Optional[argparse.Namespace] = None
    try:
        args = parser.parse_args(argv)
        check_command(args)  # paddle installed once, and usable by the GPU this host shows (exit 6)
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
    except Exception as err:  # noqa: BLE001 - the last line of defence: one line, never exit 1
        return _unexpected(err, bool(getattr(args, "debug", False) or os.environ.get("SWAVBENCH_DEBUG")))


def _environment_fault(err: BaseException) -> Optional[str]:
    """The one-line text of an environment fault no command caught (exit 6), else None."""
    if isinstance(err, OSError) and err.errno in ENVIRONMENT_ERRNOS:
        where = f" ({err.filename})" if err.filename else ""
        return f"{os_error_text(err)}{where}"
    if isinstance(err, MemoryError):
        return "out of memory (MemoryError): free memory or use a smaller input"
    if type(err).__module__ == "sqlite3" and any(
        s in str(err) for s in ("disk is full", "readonly database", "disk I/O error", "unable to open")
    ):
        return f"history database: {err} (disk full, read-only or unwritable folder?)"
    return None


def _unexpected(err: Exception, debug: bool) -> int:
    """Exit 6 for an environment fault, else 70 (a bug): one line, the traceback in a file (and stderr on debug)."""
    fault = _environment_fault(err)
    if fault:
        print(f"swavbench: error: {cut(fault)}", file=sys.stderr)
        return EXIT_ENVIRONMENT
    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    what = cut(f"{type(err).__name__}: {err}".splitlines()[0] if str(err) else type(err).__name__)
    name = f"swavbench-bug-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{os.getpid()}.txt"
    path = os.path.join(tempfile.gettempdir(), name)
    try:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(f"swavbench {' '.join(sys.argv[1:])}\n{text}")
        where = f"the traceback is in {path}"
    except OSError as write_err:
        where = f"the traceback could not be written ({os_error_text(write_err)}): rerun with --debug"
    if debug:
        print(text, file=sys.stderr, end="")
    print(f"swavbench: internal error: {what}: this is a swavbench bug, not a problem with the input; "
          f"{where}; please report it", file=sys.stderr)
    return EXIT_BUG


if __name__ == "__main__":
    sys.exit(main())
