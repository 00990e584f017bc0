"""The one error type the CLI prints as a single line (no traceback), with a distinct exit code.

Exit codes (shared by every command; documented in README):
  0  success / pass
  1  regression (a metric outside its tolerance)
  2  run failed (crash, hang, NaN/inf, missing marker, rank died)
  3  usage, config or baseline error (bad flag, unknown config key, corrupt baseline JSON)
  4  data error (missing dataset folder, empty class folder, corrupt image, bad subset file)
  5  checkpoint error (missing file, nothing matched, wrong architecture)
  6  environment error (port in use, disk full, paddle missing)
  7  inconclusive: `swavbench ab` could not tell within its maximum pairs (the machine too noisy for the band)
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_RUN_FAILED = 2
EXIT_USAGE = 3
EXIT_DATA = 4
EXIT_CHECKPOINT = 5
EXIT_ENVIRONMENT = 6
EXIT_INCONCLUSIVE = 7


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
