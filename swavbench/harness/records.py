"""The result.json boundary: read a run record and check it before anything uses it (light, pure checks).

`read_record(path)` is the one reader (history import, report, `update-baseline --from`): strict JSON
(bounded size and depth, no repeated key; NaN/Infinity only where a diverged run writes them, a step's
loss), then `record_problem` checks the type of every field swavbench writes (docs/design.md, "Run
record"), the names that become folders or anchors (run id, case, profile) and the status. Unknown fields
are kept (a newer swavbench may add some) but bounded like the rest; a record of a newer schema_version is
checked for its identity, names, finiteness and bounds only (its known fields may have changed type: the
history stores what it can read of them). `bound_record` cuts every text to
inputs.MAX_STORED with "(N more bytes)" for storing and showing. A bad record is a `RecordError` (exit 3).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional, Union

from swavbench.errors import EXIT_USAGE, SwavbenchError, from_os_error
from swavbench.harness.stepsfile import step_problem
from swavbench.inputs import (
    MARKER_RE,
    MAX_DEPTH,
    MAX_INT,
    MAX_JSON_BYTES,
    MAX_STORED,
    JSONInputError,
    NotRegularFile,
    bound_strings,
    is_number,
    loads_json,
    name_problem,
    non_finite_path,
    read_text,
    shown,
    survey,
)

STATUS_NAME_LIMIT = 32
RECORD_SCHEMA_VERSION = 1  # newest result.json schema this module knows


class RecordError(SwavbenchError):
    """A result.json that cannot be stored or read (not JSON, not an object, a field of the wrong type)."""

    exit_code = EXIT_USAGE


def _text(v: Any) -> bool:
    return v is None or isinstance(v, str)


def _int(v: Any) -> bool:
    return v is None or (type(v) is int and -MAX_INT < v < MAX_INT)


def _number(v: Any) -> bool:
    return v is None or is_number(v)


def _texts(v: Any) -> bool:
    return v is None or (isinstance(v, list) and all(isinstance(x, str) for x in v))


def _dict(v: Any) -> bool:
    return v is None or isinstance(v, dict)


def _list(v: Any) -> bool:
    return v is None or isinstance(v, list)


def _bool(v: Any) -> bool:
    return v is None or isinstance(v, bool)


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, bool)) or is_number(v)


Check = Callable[[Any], bool]
WHAT = {_text: "a text", _int: "a whole number", _number: "a finite number", _texts: "a list of texts",
        _dict: "an object", _list: "a list", _bool: "true or false", _scalar: "a text or number"}

TOP: dict[str, Check] = {
    "schema_version": _int, "config": _text, "device_profile": _text, "started_utc": _text,
    "finished_utc": _text, "duration_s": _number, "commit": _text, "paddle_version": _text, "command": _texts,
    "commands": _list, "environment": _dict, "exit_code": _int, "message": _text, "advice": _text,
    "metrics": _dict, "baseline": _dict, "checks": _list, "ranks": _list, "steps": _list, "log_lines": _list,
    "failure": _dict, "ips_steady": _dict, "notes": _texts, "resources": _dict, "attempts": _list,
}  # fmt: skip
METRICS = {"marker": _text, "loss": _text, "ips": _number, "max_mem": _text}
BASELINE = {"path": _text, "metrics": _dict, "tolerances": _dict, "provenance": _dict, "run_id": _text}
CHECK = {k: _text for k in ("metric", "baseline", "measured", "diff", "tolerance", "verdict", "message")}
RANK = {"rank": _int, "node": _int, "exit_code": _int, "last_step": _int, "reached_marker": _bool,
        "status": _text, "note": _text, "log_tail": _texts, "ips": _number}
LOG_LINE = {"epoch": _int, "iter": _int, "loss": _text, "ips": _number, "batch_cost": _number,
            "reader_cost": _number}
FAILURE = {"kind": _text, "rank": _int, "message": _text, "log_tail": _texts}
ATTEMPT = {"attempt": _int, "status": _text, "message": _text, "failure_kind": _text, "loss": _text,
           "ips": _number, "steady": _dict, "checks": _list, "log_dir": _text, "duration_s": _number}


def _fields_problem(obj: dict, spec: dict[str, Check], where: str) -> Optional[str]:
    for key, ok in spec.items():
        if key in obj and not ok(obj[key]):
            return f"field {where}{key} is {shown(obj[key], 60)}, expected {WHAT[ok]}"
    return None


def _rows_problem(rows: Optional[list], spec: dict[str, Check], name: str) -> Optional[str]:
    for i, row in enumerate(rows or []):
        if not isinstance(row, dict):
            return f"{name}[{i}] is {type(row).__name__}, expected an object"
        problem = _fields_problem(row, spec, f"{name}[{i}].")
        if problem:
            return problem
    return None


def _non_finite_path(rec: dict, surveyed: Optional[tuple[int, bool, int]] = None) -> Optional[str]:
    """Where a NaN/Infinity sits outside `steps[i].loss` (the one place a diverged run writes one)."""
    if not (surveyed or survey(rec))[1]:
        return None  # the common case, without building a path for every value
    return non_finite_path(rec, lambda key: key.startswith("steps[") and key.endswith("].loss"))


def _identity_problem(rec: dict) -> Optional[str]:
    for key in ("run_id", "case"):
        problem = name_problem(key, rec.get(key))
        if problem:
            return f"missing field {key!r}" if rec.get(key) in (None, "") else problem
    status = rec.get("status")
    if not isinstance(status, str) or not status:
        return "missing field 'status'" if status in (None, "") else f"field 'status' is {shown(status, 40)}"
    if len(status) > STATUS_NAME_LIMIT or not status.replace("_", "").isalpha() or not status.isascii():
        return f"field 'status' is {shown(status, 40)}, not a status swavbench writes"
    if rec.get("profile") is not None:
        return name_problem("profile", rec["profile"])
    return None


def newer_schema(rec: dict) -> bool:
    """True for a record written by a newer swavbench (schema_version above RECORD_SCHEMA_VERSION)."""
    version = rec.get("schema_version")
    return is_number(version) and version > RECORD_SCHEMA_VERSION


def record_problem(rec: Any, surveyed: Optional[tuple[int, bool, int]] = None) -> Optional[str]:
    """Why a loaded record is not a run record swavbench can store or read, or None (`surveyed`: its
    inputs.survey, when the caller has it)."""
    if not isinstance(rec, dict):
        return f"top level is {type(rec).__name__}, expected a JSON object"
    problem = _identity_problem(rec)
    if problem or newer_schema(rec):
        where = _non_finite_path(rec, surveyed)
        return problem or (f"field {where} is not a finite number" if where else None)
    problem = _fields_problem(rec, TOP, "")
    if problem:
        return problem
    metrics = rec.get("metrics") or {}
    problem = _fields_problem(metrics, METRICS, "metrics.") or _fields_problem(rec.get("baseline") or {},
                                                                              BASELINE, "baseline.")
    if problem:
        return problem
    if metrics.get("marker") is not None and not MARKER_RE.match(metrics["marker"]):
        return f"field metrics.marker is {shown(metrics['marker'], 40)}, expected ITER/ITERS_PER_EPOCH"
    for name, spec in (("checks", CHECK), ("ranks", RANK), ("log_lines", LOG_LINE), ("attempts", ATTEMPT)):
        problem = _rows_problem(rec.get(name), spec, name)
        if problem:
            return problem
    problem = _fields_problem(rec.get("failure") or {}, FAILURE, "failure.")
    for i, row in enumerate(rec.get("steps") or []):
        why = step_problem(row)
        if why:
            return f"steps[{i}] {why}"
    if not problem:
        steady = rec.get("ips_steady") or {}
        bad = [k for k, v in steady.items() if not _number(v)]
        problem = f"field ips_steady.{bad[0]} is {shown(steady[bad[0]], 40)}, expected a finite number" if bad else None
    where = _non_finite_path(rec, surveyed)
    return problem or (f"field {where} is not a finite number" if where else None)


def validate_record(rec: Any, fallback_run_id: Optional[str] = None) -> dict:
    """The record with run_id filled in (from the folder name when absent), texts bounded; RecordError."""
    if not isinstance(rec, dict):
        raise RecordError(f"top level is {type(rec).__name__}, expected a JSON object")
    rec = dict(rec)
    if rec.get("run_id") in (None, "") and fallback_run_id:
        rec["run_id"] = fallback_run_id
    surveyed = survey(rec)
    if surveyed[0] > MAX_DEPTH:
        raise RecordError(f"nested more than {MAX_DEPTH} levels deep")
    problem = record_problem(rec, surveyed)
    if problem:
        raise RecordError(problem)
    return bound_record(rec) if surveyed[2] > MAX_STORED else rec


def bound_record(rec: dict) -> dict:
    """A copy with every text cut to inputs.MAX_STORED characters ("... (N more bytes)")."""
    return bound_strings(rec, MAX_STORED)[0]


def load_record_text(text: str) -> Any:
    """The JSON of a result.json (NaN only where validate_record allows it); RecordError when not JSON."""
    try:
        return loads_json(text, allow_non_finite=True)
    except JSONInputError as err:
        raise RecordError(str(err)) from None


def read_record_json(path: Union[str, Path]) -> Any:
    """The JSON of one result.json, not yet validated. RecordError (exit 3) for a bad file; EnvironmentProblem
    (exit 6) when it cannot be read for an environment reason (permission, I/O)."""
    path = Path(path)
    try:
        text = read_text(path, MAX_JSON_BYTES)
    except FileNotFoundError:
        raise RecordError("does not exist") from None
    except NotRegularFile as err:
        raise RecordError(f"is {err.kind}, not a file") from None
    except OSError as err:
        raise from_os_error(err, f"cannot read run record {path}") from None
    except JSONInputError as err:
        raise RecordError(str(err)) from None
    return load_record_text(text)


def read_record(path: Union[str, Path], fallback_run_id: Optional[str] = None) -> dict:
    """Read and validate one result.json (`read_record_json`, then `validate_record`)."""
    return validate_record(read_record_json(path), fallback_run_id)
