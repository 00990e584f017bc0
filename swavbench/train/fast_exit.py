"""A launched rank that finished ends right after the exit handlers, skipping the interpreter's teardown.

Measured (8 gloo ranks on 2 cores, Paddle 3.3.1): after the last exit handler, tearing the interpreter down
(module dicts, paddle's C++ singletons, the gloo pairs, the TCPStore) kept each rank alive 1.3-1.7 s, and
the launcher, which notices only once every rank is gone, waited for the slowest. Everything a run leaves
behind is written and closed before (logs flushed, steps file and checkpoint closed), and every
`atexit` handler still runs (paddle's data loader and shared-memory cleanup among them): `install()` is
called before paddle is imported, so its handler is the last to run, and only then calls `os._exit`.

Only a rank started by paddle.distributed.launch arms it (`arm`), and only with the code its command
returns; any other caller of `swavbench train` exits as Python normally does.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Optional

_ARMED: list[int] = []


def install() -> None:
    """Register the exit handler now (before paddle registers its own, so that it runs after them)."""
    if not getattr(install, "done", False):
        atexit.register(_exit_now)
        install.done = True  # type: ignore[attr-defined]


def launched(environ: Optional[dict] = None) -> bool:
    """True in a rank of a paddle.distributed.launch job of more than one rank."""
    env = os.environ if environ is None else environ
    return bool(env.get("PADDLE_TRAINER_ID")) and int(env.get("PADDLE_TRAINERS_NUM") or 1) > 1


def arm(code: int) -> int:
    """Exit with `code` right after the exit handlers (launched ranks only); returns `code`."""
    if launched():
        _ARMED[:] = [int(code)]
    return code


def _exit_now() -> None:
    if not _ARMED:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(_ARMED[0])
