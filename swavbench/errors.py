"""The one error type the CLI prints as a single line (no traceback), with a distinct exit code.

Exit codes (shared by every command; documented in README):
  0  success / pass
  1  regression (a metric outside its tolerance)
  2  run failed (crash, hang, NaN/inf, missing marker, rank died)
  3  usage, config or baseline error (bad flag, unknown config key, corrupt baseline JSON)
  4  data error (missing dataset folder, empty class folder, corrupt image, bad subset file)
  5  checkpoint error (missing file, nothing matched, wrong architecture)
  6  environment error (port in use, disk full, read-only folder, permission, name too long, paddle missing)
  7  inconclusive: `swavbench ab` could not tell within its maximum pairs (the machine too noisy for the band)
 70  unexpected exception: a swavbench bug (one line naming the traceback file; `--debug` prints it)
"""

from __future__ import annotations

import errno

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_RUN_FAILED = 2
EXIT_USAGE = 3
EXIT_DATA = 4
EXIT_CHECKPOINT = 5
EXIT_ENVIRONMENT = 6
EXIT_INCONCLUSIVE = 7
EXIT_BUG = 70  # sysexits.h EX_SOFTWARE: never 1, which CI reads as "regression"

# OSError numbers that say "this machine / file system", not "this input": exit 6
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: "disk full: free some space",
    errno.EDQUOT: "disk quota exceeded: free some space",
    errno.EROFS: "read-only file system: use a writable folder",
    errno.EACCES: "permission denied: check the owner and mode of the file and its folder",
    errno.EPERM: "operation not permitted: check the owner and attributes of the file and its folder",
    errno.ENAMETOOLONG: "name too long: use a shorter path",
    errno.EIO: "I/O error: check the disk",
    errno.EMFILE: "too many open files",
    errno.ENFILE: "too many open files",
    errno.ENOMEM: "out of memory",
}


class SwavbenchError(Exception):
    """An error meant for a person: `str(err)` is one line naming the file/field and what to do."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class ConfigError(SwavbenchError):
    exit_code = EXIT_USAGE


class BaselineError(SwavbenchError):
    exit_code = EXIT_USAGE


class DataError(SwavbenchError):
    exit_code = EXIT_DATA


class CheckpointError(SwavbenchError):
    exit_code = EXIT_CHECKPOINT


class EnvironmentProblem(SwavbenchError):
    exit_code = EXIT_ENVIRONMENT


class RunFailed(SwavbenchError):
    """A run that did not produce a judgeable result; `kind` names the failure (e.g. 'missing_marker')."""

    exit_code = EXIT_RUN_FAILED

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def os_error_text(err: OSError) -> str:
    """`strerror` of an OSError with what to do, e.g. "No space left on device (disk full: free some space)"."""
    text = err.strerror or str(err) or type(err).__name__
    hint = ENVIRONMENT_ERRNOS.get(err.errno)
    return f"{text} ({hint})" if hint else text


def from_os_error(err: OSError, doing: str, after: str = "") -> SwavbenchError:
    """One-line error for an OSError while `doing` (e.g. "could not write /x/y.json"): EnvironmentProblem
    (exit 6) for an environment fault (ENVIRONMENT_ERRNOS), else a usage error (exit 3)."""
    message = f"{doing}: {os_error_text(err)}{after}"
    if err.errno in ENVIRONMENT_ERRNOS:
        return EnvironmentProblem(message)
    return SwavbenchError(message, EXIT_USAGE)
