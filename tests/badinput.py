"""Building bad inputs from the checked-in fixtures, and running the CLI on them in-process.

Shared by tests/test_bad_inputs.py, tests/test_faults.py and tests/test_fuzz.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path
from typing import Callable, Optional

from swavbench.cli import main

ROOT = Path(__file__).resolve().parents[1]
LOGS = ROOT / "tests" / "fixtures" / "logs"
RUNS = ROOT / "tests" / "fixtures" / "runs"
CPU_LOG = LOGS / "swavbench-cpu"  # 4 ranks, marker 20/78, steps files, run header
CPU_BASELINE = ROOT / "tests" / "fixtures" / "baselines" / "swavbench-cpu.json"
CASE = "swav_pt_1n8c_fp16o1"
PROFILE = "fixture-cpu-1t"
DOCUMENTED_EXITS = {0, 1, 2, 3, 4, 5, 6}  # README; 70 is documented too, but it means a swavbench bug
MARKER_LINE = "[Iter: 20/78]"


def run_cli(*args: object) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `swavbench ARGS` in this process (argparse exits are caught)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 3
    return code, out.getvalue(), err.getvalue()


def log_lines() -> list[str]:
    """The lines of the swavbench-cpu fixture's workerlog.0 (no newlines)."""
    return (CPU_LOG / "workerlog.0").read_text(encoding="utf-8").splitlines()


def marker_index(lines: list[str]) -> int:
    return next(i for i, line in enumerate(lines) if MARKER_LINE in line)


def log_dir(tmp: Path, edit: Optional[Callable[[list[str]], list[str]]] = None, name: str = "log",
            text: Optional[str] = None) -> Path:
    """A copy of the swavbench-cpu log dir, workerlog.0 replaced by `edit(lines)` or by `text`."""
    dest = tmp / name
    shutil.copytree(CPU_LOG, dest)
    if edit is not None:
        text = "\n".join(edit(log_lines())) + "\n"
    if text is not None:
        (dest / "workerlog.0").write_bytes(text.encode("utf-8", "surrogateescape"))
    return dest


def record() -> dict:
    """A result.json for the swavbench-cpu log (a passing run on the fixture profile)."""
    return {
        "schema_version": 1, "run_id": f"20261128T193702Z-{CASE}-fx01", "case": CASE, "profile": PROFILE,
        "device_profile": "cpu", "status": "pass", "exit_code": 0, "message": "all checks pass",
        "command": ["swavbench", "run", CASE], "metrics": {"marker": "20/78", "loss": "8.31987", "ips": 12.4,
                                                           "max_mem": "0.21"},
    }  # fmt: skip


def run_folder(tmp: Path, rec: Optional[dict] = None, name: str = "run", record_text: Optional[str] = None,
               edit: Optional[Callable[[list[str]], list[str]]] = None) -> Path:
    """`reports/runs/<id>/`-style folder: log/ (the swavbench-cpu log) and result.json."""
    folder = tmp / name
    folder.mkdir(parents=True)
    log_dir(folder, edit)
    text = record_text if record_text is not None else json.dumps(record() if rec is None else rec)
    (folder / "result.json").write_bytes(text.encode("utf-8", "surrogateescape"))
    return folder


def update_from(tmp: Path, *folders: Path, extra: tuple = ()) -> tuple[int, str, str]:
    """`update-baseline CASE --from FOLDERS` into tmp/baselines (GPU profile: no dataset needed)."""
    return run_cli("update-baseline", CASE, "--profile", "gpu", "--baseline-dir", tmp / "baselines",
                   "--from", *folders, *extra)


def baseline_text(**changes: object) -> str:
    """The fixture baseline with `metrics.X` / `tolerances.X` / top-level keys changed (JSON literals kept)."""
    data = json.loads(CPU_BASELINE.read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    return json.dumps(data, allow_nan=True)


def one_line_error(err: str) -> str:
    """The one `swavbench: error:` line of stderr (asserts there is exactly one and no traceback)."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("swavbench: ")]
    assert len(lines) == 1, err
    return lines[0]
