"""Environment faults are exit 6 in one line, an unexpected exception exit 70, and a baseline's
read-modify-write is one locked step that loses nothing (issue 13). Driven through the CLI."""

from __future__ import annotations

import builtins
import errno
import io
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from badinput import CPU_BASELINE, CPU_LOG, PROFILE, RUNS, one_line_error, record, run_cli, run_folder, update_from

from swavbench.harness import runs as runs_mod
from swavbench.store import history as history_mod

BASELINE = Path("baselines") / PROFILE / "swav_pt_1n8c_fp16o1.json"


def recorded(tmp_path: Path, band: str = "10") -> tuple[Path, Path]:
    """A run folder and the baseline recorded from it (band +-band%)."""
    run = run_folder(tmp_path)
    code, out, err = update_from(tmp_path, run, extra=("--ips-band", band))
    assert code == 0, out + err
    return run, tmp_path / BASELINE


def copy_runs(dest: Path) -> Path:
    for src in RUNS.iterdir():
        (dest / src.name).mkdir(parents=True)
        (dest / src.name / "result.json").write_bytes((src / "result.json").read_bytes())
    return dest


# --- an unexpected exception -----------------------------------------------------------------------------

def test_an_unexpected_exception_is_exit_70_in_one_line_with_the_traceback_in_a_file(tmp_path, monkeypatch):
    import swavbench.commands.parse as parse_cmd

    def broken(args):
        raise KeyError("boom")

    monkeypatch.setattr(parse_cmd, "run", broken)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    code, out, err = run_cli("parse", CPU_LOG)
    assert code == 70 and out == ""
    line = one_line_error(err)
    assert "swavbench bug" in line and "KeyError: 'boom'" in line
    (trace,) = tmp_path.glob("swavbench-bug-*.txt")
    assert str(trace) in line and "Traceback (most recent call last)" in trace.read_text()
    assert 'raise KeyError("boom")' in trace.read_text()
    code, out, err = run_cli("--debug", "parse", CPU_LOG)
    assert code == 70 and "Traceback (most recent call last)" in err and err.rstrip().endswith("please report it")


# --- environment faults: exit 6 --------------------------------------------------------------------------

def small_disk(monkeypatch, pages: int) -> None:
    """Every history connection on a 'disk' of `pages` sqlite pages: writes past it fail SQLITE_FULL."""
    real = sqlite3.connect

    def connect(*args, **kwargs):
        conn = real(*args, **kwargs)
        conn.execute(f"PRAGMA max_page_count = {pages}")
        return conn

    monkeypatch.setattr(history_mod.sqlite3, "connect", connect)


def test_a_full_disk_under_the_history_is_exit_6_and_keeps_what_was_stored(tmp_path, monkeypatch):
    db, runs = tmp_path / "h.sqlite", copy_runs(tmp_path / "runs")
    small_disk(monkeypatch, 16)  # the tables fit, not all the runs
    for args in (("history", "import", runs), ("report", "--runs", runs, "--out", tmp_path / "r.html")):
        code, out, err = run_cli(*args, "--db", db)
        assert code == 6, out + err
        assert "database or disk is full" in one_line_error(err) and str(db) in err
    monkeypatch.undo()
    assert not (tmp_path / "r.html").exists()
    with history_mod.History(tmp_path / "full.sqlite") as full:
        full.import_runs(runs)
    rows = "SELECT run_id, (SELECT COUNT(*) FROM steps s WHERE s.run_id = r.run_id), (SELECT COUNT(*) FROM checks c " \
           "WHERE c.run_id = r.run_id) FROM runs r ORDER BY run_id"
    with sqlite3.connect(db) as conn, sqlite3.connect(tmp_path / "full.sqlite") as ref:
        kept, every = conn.execute(rows).fetchall(), ref.execute(rows).fetchall()
    # whole runs only: an import commits in batches of whole runs, so the full disk kept a prefix of complete
    # runs (none here: all nine are one batch), never half a run; the next import with room stores the rest
    assert kept == every[: len(kept)] and len(kept) < len(every)
    with history_mod.History(db) as again:
        assert not again.import_runs(runs).failed
    with sqlite3.connect(db) as conn:
        assert conn.execute(rows).fetchall() == every


def read_only_disk(monkeypatch) -> None:
    real = sqlite3.connect

    def connect(path, *args, **kwargs):
        return real(f"file:{path}?mode=ro", *args, uri=True, **kwargs)

    monkeypatch.setattr(history_mod.sqlite3, "connect", connect)


def test_a_history_on_a_read_only_disk_is_exit_6(tmp_path, monkeypatch):
    runs = copy_runs(tmp_path / "runs")
    read_only_disk(monkeypatch)
    code, out, err = run_cli("history", "import", runs, "--db", tmp_path / "new.sqlite")  # a new database
    assert code == 6 and "unable to open database file" in one_line_error(err)
    monkeypatch.undo()
    history_mod.History(tmp_path / "old.sqlite").close()
    read_only_disk(monkeypatch)
    code, out, err = run_cli("history", "import", runs, "--db", tmp_path / "old.sqlite")  # an existing one
    assert code == 6 and "readonly database" in one_line_error(err)


def test_a_full_disk_or_a_name_too_long_writing_the_report_is_exit_6_and_keeps_the_old_one(tmp_path, monkeypatch):
    from swavbench.report import html

    runs, db, out_file = copy_runs(tmp_path / "runs"), tmp_path / "h.sqlite", tmp_path / "index.html"
    out_file.write_text("the old report")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(html.os, "replace", full)
    code, out, err = run_cli("report", "--runs", runs, "--db", db, "--out", out_file)
    monkeypatch.undo()
    assert code == 6 and "No space left on device (disk full" in one_line_error(err) and str(out_file) in err
    # the old index is kept and no temp file is left (per-run pages written before the index may stay)
    assert out_file.read_text() == "the old report"
    assert sorted(p.name for p in tmp_path.iterdir()) in (["h.sqlite", "index.html", "runs"],
                                                          ["h.sqlite", "index.html", "run", "runs"])
    assert not [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    code, out, err = run_cli("report", "--runs", runs, "--db", db, "--out", tmp_path / ("r" * 300 + ".html"))
    assert code == 6 and "File name too long" in one_line_error(err)
    code, out, err = run_cli("history", "import", runs, "--db", tmp_path / ("h" * 300 + ".sqlite"))
    assert code == 6 and "unable to open database file" in one_line_error(err)


def test_a_read_only_baseline_folder_is_exit_6_and_the_baseline_is_unchanged(tmp_path, monkeypatch):
    run, path = recorded(tmp_path)
    before = path.read_bytes()
    real_open = os.open

    def read_only(file, flags, *args, **kwargs):
        if str(file).endswith(".lock") and flags & os.O_CREAT:
            raise OSError(errno.EROFS, "Read-only file system", str(file))
        return real_open(file, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    code, out, err = update_from(tmp_path, run)
    monkeypatch.undo()
    assert code == 6 and "Read-only file system (read-only file system" in one_line_error(err)
    assert path.read_bytes() == before


def test_a_baseline_that_cannot_be_read_for_permission_is_exit_6(tmp_path, monkeypatch):
    path = tmp_path / "b.json"
    path.write_bytes(CPU_BASELINE.read_bytes())
    def denying(real):
        def opener(file, *args, **kwargs):
            if str(file) == str(path):
                raise PermissionError(errno.EACCES, "Permission denied", str(file))
            return real(file, *args, **kwargs)

        return opener

    for module in (io, builtins, os):  # every way of opening a file
        monkeypatch.setattr(module, "open", denying(module.open))
    code, out, err = run_cli("compare", CPU_LOG, "--baseline", path, "--profile", PROFILE)
    monkeypatch.undo()
    assert code == 6 and "Permission denied (permission denied" in one_line_error(err) and str(path) in err


# --- one read-modify-write under one lock ----------------------------------------------------------------

SLOW_WRITER = r"""
import sys, time
from pathlib import Path
import swavbench.harness.baselines as bl
import swavbench.commands.update_baseline as ub

name, delay, flags = sys.argv[1], float(sys.argv[2]), Path(sys.argv[3])
real = bl.load_baseline

def slow_read(path):  # say "about to read", wait for the other writer (2 s at most), read, think a while
    (flags / f"ready.{name}").touch()
    deadline = time.time() + 5
    while not (flags / "go").exists() and time.time() < deadline:
        time.sleep(0.02)
    out = real(path)
    time.sleep(delay)
    return out

bl.load_baseline = slow_read
if hasattr(ub, "load_baseline"):
    ub.load_baseline = slow_read
from swavbench.cli import main
sys.exit(main(sys.argv[4:]))
"""


def test_two_update_baselines_at_once_never_lose_an_exit_0_write(tmp_path):
    run, path = recorded(tmp_path, band="10")
    flags = tmp_path / "flags"
    flags.mkdir()
    args = ["update-baseline", "swav_pt_1n8c_fp16o1", "--profile", "gpu", "--baseline-dir",
            str(tmp_path / "baselines"), "--from", str(run)]

    def writer(name: str, delay: float, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", SLOW_WRITER, name, str(delay), str(flags), *args, *extra],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    band = writer("band", 0.1, "--ips-band", "7")  # changes the band...
    plain = writer("plain", 1.0)  # ...while this one re-records and keeps whatever band it read
    deadline = time.time() + 2
    while len(list(flags.glob("ready.*"))) < 2 and time.time() < deadline:
        time.sleep(0.02)  # under one lock only one of them gets to its read
    (flags / "go").touch()
    results = [p.communicate(timeout=60) + (p.returncode,) for p in (band, plain)]
    assert [r[2] for r in results] == [0, 0], results
    assert json.loads(path.read_text())["tolerances"]["ips_pct"] == 7  # the band writer's exit 0 is not lost


def test_the_lock_is_never_followed_through_a_symlink(tmp_path):
    run, path = recorded(tmp_path)
    before = path.read_bytes()
    victim = tmp_path / "victim"
    Path(f"{path}.lock").symlink_to(victim)
    code, out, err = update_from(tmp_path, run)
    assert code == 3 and "is a symlink" in one_line_error(err)
    assert not victim.exists() and path.read_bytes() == before


KILLED_WRITER = r"""
import os, signal, sys
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # killed after writing the temp file, before the rename
from swavbench.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_writer_killed_mid_write_leaves_nothing_the_next_writer_does_not_clean(tmp_path):
    run, path = recorded(tmp_path)
    before = path.read_bytes()
    args = ["update-baseline", "swav_pt_1n8c_fp16o1", "--profile", "gpu", "--baseline-dir",
            str(tmp_path / "baselines"), "--from", str(run)]
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, *args, "--ips-band", "9"], capture_output=True,
                            timeout=60)
    assert killed.returncode == -9 and path.read_bytes() == before
    left = sorted(p.name for p in path.parent.iterdir())
    assert any(n.endswith(".tmp") for n in left) and f"{path.name}.lock" in left  # what SIGKILL leaves
    code, out, err = update_from(tmp_path, run)
    assert code == 0, out + err
    assert "removed 1 temp file(s) a killed writer left" in out
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]


def test_files_keep_the_mode_of_the_file_they_replace_and_new_ones_are_0644(tmp_path):
    run, path = recorded(tmp_path)
    assert path.stat().st_mode & 0o777 == 0o644
    path.chmod(0o664)
    assert update_from(tmp_path, run)[0] == 0
    assert path.stat().st_mode & 0o777 == 0o664
    result = tmp_path / "r" / "result.json"
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / ".result.json.x1y2.tmp").write_text("{")  # left by a killed runner
    runs_mod.write_json_atomic(result, record())
    assert result.stat().st_mode & 0o777 == 0o644 and [p.name for p in (tmp_path / "r").iterdir()] == ["result.json"]


@pytest.mark.parametrize("band", ["nan", "inf", "0", "100", "-1"])
def test_update_baseline_band_must_be_a_percentage(tmp_path, band):
    run = run_folder(tmp_path)
    code, out, err = update_from(tmp_path, run, extra=("--ips-band", band))
    assert code == 3 and "--ips-band" in one_line_error(err)
