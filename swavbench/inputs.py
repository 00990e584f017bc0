"""The one validation layer for what swavbench reads: strict JSON, bounded text, names, numbers (pure).

Every boundary (worker log line, steps file, run header, result.json, baseline) goes through these, so that
a bad file is one line naming the file and field, never a traceback, a silent wrong figure or an unbounded
message. Light module: imports nothing heavy.

- `loads_json` refuses NaN/Infinity (unless asked), numbers that overflow, repeated keys, nesting deeper
  than MAX_DEPTH and inputs over a size limit; the error is a `JSONInputError` (a ValueError) saying why.
- `cut` bounds text shown to people or stored: the head and "... (N more bytes)".
- `name_problem` restricts names that become folders or anchors (profile, case, run id) to what swavbench
  itself generates.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional, Union

MAX_SHOWN = 300  # characters of input text in a message, a table cell or a log tail line
MAX_STORED = 4096  # characters of one text field of a run record stored in the history / report
MAX_DEPTH = 32  # nesting of a JSON document (records are 4 deep)
MAX_JSON_BYTES = 64 << 20  # a result.json with many thousand steps is ~1 MB
MAX_BASELINE_BYTES = 1 << 20  # a baseline is ~1 KB
MAX_NUMBER_CHARS = 40  # a printed number longer than this is not a measurement
MAX_IPS = 1e9  # images/s: anything above is a corrupt figure, not a measurement
MIN_IPS = 1e-6  # images/s: one image in 11 days is not a measurement either
MAX_INT = 1 << 63  # a JSON integer beyond this is no figure swavbench writes (and float() of it may overflow)

NAME_PATTERNS = {
    # profile keys: `cpu-<model slug>-<n>t`, `gpu-<model slug>-x<n>`, `passl-a100` (baselines/<profile>/)
    "profile": re.compile(r"[a-z0-9][a-z0-9._-]{0,99}"),
    # case ids: swav_pt_1n8c_fp16o1
    "case": re.compile(r"[a-z0-9][a-z0-9_]{0,63}"),
    # run ids: 20261128T200102Z-swav_pt_1n8c_fp16o1-3f9a (folder names under reports/runs/)
    "run_id": re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}"),
}
NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]{1,3})?")
MARKER_RE = re.compile(r"^([0-9]{1,9})/([0-9]{1,9})$")  # ITER/ITERS_PER_EPOCH, e.g. 200/2599
NON_FINITE_RE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)


class JSONInputError(ValueError):
    """A JSON text swavbench refuses; `str(err)` says why (and where, for syntax errors)."""


def cut(text: object, limit: int = MAX_SHOWN) -> str:
    """`text` as is when short, else its first `limit` characters + ' ... (N more bytes)'."""
    text = str(text)
    if len(text) <= limit:
        return text
    rest = text[limit:]
    more = len(rest) if rest.isascii() else len(rest.encode("utf-8", "replace"))
    return f"{text[:limit]} ... ({more} more bytes)"


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """repr-like form of an input value for a one-line message: escaped control characters, bounded."""
    return cut(ascii(value) if isinstance(value, str) else repr(value), limit)


def name_problem(kind: str, value: object) -> Optional[str]:
    """Why `value` is not a valid `kind` name ("profile", "case", "run_id"), or None when it is."""
    pattern = NAME_PATTERNS[kind]
    if not isinstance(value, str):
        return f"{kind} must be a string, got {type(value).__name__}"
    if not pattern.fullmatch(value):
        return f"{kind} name {shown(value, 80)} is not one swavbench generates (allowed: {pattern.pattern})"
    return None


def is_number(value: object) -> bool:
    """A JSON number that is finite and fits a float (bool is not a number here)."""
    if type(value) is int:
        return -MAX_INT < value < MAX_INT
    return type(value) is float and math.isfinite(value)


def number_text_problem(text: object, allow_non_finite: bool = False) -> Optional[str]:
    """Why `text` is not a printed decimal number (e.g. "7.94836"), or None. nan/inf only if allowed."""
    if not isinstance(text, str):
        return f"is {type(text).__name__}, expected a number as text"
    if len(text) > MAX_NUMBER_CHARS:
        return f"is {len(text)} characters long, not a number"
    if NUMBER_RE.fullmatch(text):
        return None if math.isfinite(float(text)) else f"{shown(text)} overflows"
    if allow_non_finite and NON_FINITE_RE.fullmatch(text):
        return None
    return f"{shown(text)} is not a number"


def _reject_constant(name: str) -> Any:
    raise JSONInputError(f"{name} is not a finite number (JSON has no NaN or Infinity)")


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JSONInputError(f"number {cut(text, 40)} overflows")
    return value


def _no_repeats(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise JSONInputError(f"key {shown(key, 60)} appears twice in one object (spliced or hand-edited file?)")
        out[key] = value
    return out


def survey(value: Any) -> tuple[int, bool, int]:
    """(nesting depth, holds a NaN/Infinity or an integer beyond MAX_INT, longest string or key) of a loaded
    JSON value: one iterative walk (never the recursion limit), scalars checked in place."""
    deepest, non_finite, longest = 0, False, 0
    if type(value) is not dict and type(value) is not list:
        stack, value = [], [value]
        stack.append((value, 0))
    else:
        stack = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        if depth > deepest:
            deepest = depth
        if type(item) is dict:
            longest = max(longest, max(map(len, item), default=0))
            children = item.values()
        else:
            children = item
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                push((child, depth + 1))
            elif kind is str:
                if len(child) > longest:
                    longest = len(child)
            elif kind is float and child - child != 0.0:  # inf - inf and nan - nan are nan
                non_finite = True
            elif kind is int and not -MAX_INT < child < MAX_INT:
                non_finite = True
    return deepest, non_finite, longest


def depth_problem(value: Any, max_depth: int = MAX_DEPTH) -> Optional[str]:
    """Why a loaded JSON value nests too deep, or None (iterative: never hits the recursion limit)."""
    return f"nested more than {max_depth} levels deep" if survey(value)[0] > max_depth else None


def walk(value: Any) -> Iterator[tuple[str, Any]]:
    """(dotted path, node) of `value` and of everything nested in it (`metrics.ips`, `steps[3].loss`; "" is
    the top level); iterative, so a deep value never hits the recursion limit."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        key, item = stack.pop()
        yield key, item
        if isinstance(item, dict):
            stack.extend((f"{key}.{k}" if key else str(k), v) for k, v in item.items())
        elif isinstance(item, list):
            stack.extend((f"{key}[{i}]", v) for i, v in enumerate(item))


def non_finite_path(value: Any, allowed: Callable[[str], bool] = lambda key: False) -> Optional[str]:
    """The dotted path (`metrics.ips`, `steps[3].loss`) of the first NaN/Infinity (or integer beyond MAX_INT)
    not `allowed`, or None."""
    for key, item in walk(value):
        if (type(item) is float and not math.isfinite(item)) or (type(item) is int and not -MAX_INT < item < MAX_INT):
            if not allowed(key):
                return key or "(top level)"
    return None


def loads_json(text: str, allow_non_finite: bool = False, max_depth: int = MAX_DEPTH) -> Any:
    """json.loads, refusing what swavbench never writes; JSONInputError (one line) on anything bad."""
    hooks: dict[str, Any] = {"object_pairs_hook": _no_repeats}  # a huge integer: refused by the range checks
    if not allow_non_finite:
        hooks.update(parse_constant=_reject_constant, parse_float=_float)
    try:
        value = json.loads(text, **hooks)
    except JSONInputError:
        raise
    except RecursionError:
        raise JSONInputError(f"nested more than {max_depth} levels deep") from None
    except ValueError as err:  # json.JSONDecodeError, int() limits
        where = f" (line {err.lineno}, column {err.colno})" if isinstance(err, json.JSONDecodeError) else ""
        raise JSONInputError(f"not valid JSON: {getattr(err, 'msg', err)}{where}") from None
    problem = depth_problem(value, max_depth)
    if problem:
        raise JSONInputError(problem)
    return value


class NotRegularFile(OSError):
    """A folder, FIFO, socket or device where swavbench expects a file; `kind` says which ("a folder")."""

    def __init__(self, path: Union[str, Path], kind: str) -> None:
        super().__init__(errno.EISDIR if kind == "a folder" else errno.EINVAL, f"is {kind}, not a file", str(path))
        self.kind = kind


def open_regular(path: Union[str, Path]) -> BinaryIO:
    """Open a regular file for reading in binary; NotRegularFile for a folder or a FIFO (which would block),
    other OSErrors (missing, permission, I/O) as raised."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(path, "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                             else "a socket or device")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_text(path: Union[str, Path], max_bytes: int) -> str:
    """A file's text (UTF-8, strict); JSONInputError when it is larger than max_bytes or not UTF-8.

    NotRegularFile for a folder or FIFO; any other OSError (missing, permission, I/O) propagates for the
    caller to classify.
    """
    with open_regular(path) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise JSONInputError(f"is larger than {max_bytes >> 10} KiB: not a file swavbench writes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise JSONInputError(f"is not UTF-8 text (byte {err.start})") from None


def bound_strings(value: Any, limit: int = MAX_STORED) -> tuple[Any, int]:
    """`value`, or a copy with every string (and key) cut to `limit` (`cut`) when one is longer; (it, strings cut)."""
    if survey(value)[2] <= limit:
        return value, 0
    count = 0

    def walk(item: Any) -> Any:
        nonlocal count
        if isinstance(item, str):
            if len(item) > limit:
                count += 1
                return cut(item, limit)
            return item
        if isinstance(item, dict):
            return {walk(k) if isinstance(k, str) else k: walk(v) for k, v in item.items()}
        if isinstance(item, list):
            return [walk(v) for v in item]
        return item

    return walk(value), count  # recursion is safe: depth was bounded by loads_json
