"""Atomic, locked file replacement: the write half of a read-modify-write (baselines.update_baseline).

- `hold_lock(<file>.lock)`: an exclusive flock on a lock file opened with O_NOFOLLOW (never through a
  symlink), waiting up to `wait_s` for another writer; the holder unlinks the file on release, and a
  waiter checks it locked the file still at that path. A lock file left by a killed writer holds no lock:
  the next writer takes it and removes it.
- `remove_stale_temps(path)`: temp files of `path` a killed writer left (call it holding the lock).
- `replace_file(path, text)`: temp file in the same folder with the mode of the file it replaces (0644
  when new), fsync, os.replace, fsync of the folder. The previous file is intact on any failure.
An OSError is one line (swavbench.errors.from_os_error): exit 6 for disk full, read-only, permission.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from swavbench.errors import BaselineError, from_os_error

NEW_FILE_MODE = 0o644


def _open_lock(lock_path: Path) -> int:
    """Open (create) the lock file without following a symlink; BaselineError / exit 6 when impossible."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(lock_path, flags, NEW_FILE_MODE)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise BaselineError(f"lock {lock_path} is a symlink: swavbench never follows one; remove it "
                                "(rm it) and rerun") from None
        raise from_os_error(err, f"cannot create the lock {lock_path}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise BaselineError(f"lock {lock_path} is not a regular file: remove it and rerun")
    return fd


def _lock(lock_path: Path, target: Path, wait_s: float, writer: str) -> int:
    """Exclusive lock on `<file>.lock` (waiting up to wait_s); fd returned. Still held: BaselineError (exit 3)."""
    deadline = time.monotonic() + wait_s
    while True:
        fd = _open_lock(lock_path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            # The holder unlinks the lock file on release: make sure we locked the file still at that path.
            if os.fstat(fd).st_ino == os.lstat(lock_path).st_ino:
                return fd
        except (BlockingIOError, FileNotFoundError):
            pass
        os.close(fd)
        if time.monotonic() >= deadline:
            raise BaselineError(f"another {writer} is writing {target} (lock {lock_path}, held for more than "
                                f"{wait_s:g} s); wait for it to finish")
        time.sleep(0.05)


def remove_stale_temps(path: Path) -> list[str]:
    """Temp files of `path` left by a writer that was killed (we hold the lock: none is in use)."""
    removed = []
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            if tmp.is_symlink() or tmp.is_file():
                tmp.unlink()
                removed.append(tmp.name)
        except OSError:
            continue
    return removed


def _target_mode(path: Path) -> int:
    """The permission bits the new file gets: those of the file it replaces, else 0644."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return NEW_FILE_MODE
    return stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else NEW_FILE_MODE


def replace_file(path: Path, text: str, what: str = "file") -> None:
    """Temp file in the same dir (mode of the old file), fsync, os.replace, fsync the dir."""
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fchmod(fh.fileno(), _target_mode(path))
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as err:
        raise from_os_error(err, f"could not write {what} {path}", "; the previous file is unchanged") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def hold_lock(lock_path: Path, target: Path, wait_s: float, writer: str = "writer") -> Iterator[None]:
    """Hold the exclusive lock `lock_path` of `target` (see the module doc); removed on release."""
    fd = _lock(lock_path, target, wait_s, writer)
    try:
        yield
    finally:
        lock_path.unlink(missing_ok=True)
        os.close(fd)
