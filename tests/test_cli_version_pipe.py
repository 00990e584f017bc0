"""`swavbench --version` and a closed stdout pipe (`swavbench cases --json | head`), from the outside."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from swavbench import __version__

SWAVBENCH = [sys.executable, "-m", "swavbench.cli"]
ROOT = Path(__file__).resolve().parents[1]


def test_version_prints_the_package_version() -> None:
    proc = subprocess.run([*SWAVBENCH, "--version"], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith(f"swavbench {__version__} (python ")
    assert proc.stderr == ""


def test_closed_pipe_ends_quietly_with_141() -> None:
    """The reader is gone before the command writes: no BrokenPipeError traceback, no 'Exception ignored'."""
    proc = subprocess.Popen([*SWAVBENCH, "cases", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141
    assert err == ""
