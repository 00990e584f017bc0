"""Baselines: `baselines/<profile>/<case>.json`, versioned JSON, atomic locked writes, machine profile key.

File layout (schema_version 1, keys sorted, indent 2):
    {"schema_version": 1, "case": "swav_pt_1n8c_fp16o1", "config": "<PASSL long name>", "profile": "...",
     "metrics": {"loss": "7.94836", "ips": 963.2715, "max_mem": "8.37" | null, "marker": "200/2599"},
     "tolerances": {"ips_pct": 5.0, "loss": "exact", "max_mem": "exact" | <GB> | "ignore"},
     "provenance": {"date_utc", "commit", "paddle_version", "machine", "run_id", "command", ...}}
An older file is upgraded on load by MIGRATIONS[v] (v -> v + 1); a newer one is refused.

Loading is the baseline boundary: strict JSON (no NaN/Infinity, no repeated key, bounded size and depth),
names that become folders restricted to what swavbench generates (swavbench.inputs), every figure a finite
number in range, every text bounded. Writing is one read-modify-write under one lock (`update_baseline`):
the old file is read inside the lock, so two writers serialise (the second waits, then reads the first's
file) or the second is refused (exit 3); the lock is never opened through a symlink; temp files left by a
killed writer are removed; the new file keeps the mode of the one it replaces (0644 for a new file).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from swavbench.errors import BaselineError, from_os_error
from swavbench.harness.atomic import hold_lock, remove_stale_temps, replace_file
from swavbench.inputs import (
    MARKER_RE,
    MAX_BASELINE_BYTES,
    MAX_IPS,
    MAX_SHOWN,
    MAX_STORED,
    MIN_IPS,
    JSONInputError,
    NotRegularFile,
    cut,
    is_number,
    loads_json,
    name_problem,
    non_finite_path,
    number_text_problem,
    read_text,
    shown,
    walk,
)
from swavbench.machine import (  # noqa: F401  (the profile key lives in swavbench.machine; re-exported)
    cpu_model,
    cpu_profile,
    detect_gpu,
    gpu_profile,
    machine_profile,
    slugify,
)

SCHEMA_VERSION = 1
# MIGRATIONS[v] turns a schema-v dict into a schema-(v+1) dict.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}
DEFAULT_TOLERANCES = {"ips_pct": 5.0, "loss": "exact", "max_mem": "exact"}
REQUIRED_METRICS = ("loss", "ips", "marker")
LOCK_WAIT_S = 10.0  # a writer holds the lock for milliseconds (read, diff, write): wait this long, then refuse
MAX_TOLERANCE = 1e6  # loss / max_mem tolerances (absolute)


@dataclass
class Baseline:
    case: str  # short id, e.g. swav_pt_1n8c_fp16o1
    profile: str
    metrics: dict  # {"loss": str, "ips": float, "max_mem": str | None, "marker": "200/2599"}
    tolerances: dict = field(default_factory=lambda: dict(DEFAULT_TOLERANCES))
    provenance: dict = field(default_factory=dict)
    config: str = ""  # PASSL long config name
    schema_version: int = SCHEMA_VERSION


def baseline_path(root: Union[str, Path], profile: str, case: str) -> Path:
    """`<root>/<profile>/<case>.json`."""
    for what, value in (("profile", profile), ("case", case)):
        problem = name_problem(what, value)
        if problem:
            raise BaselineError(f"bad baseline {what}: {problem}")
    return Path(root) / profile / f"{case}.json"


def to_dict(b: Baseline) -> dict:
    return asdict(b)


def _fix(path: Path) -> str:
    return f"restore it (git checkout -- {path}) or re-record it: swavbench update-baseline {path.stem}"


def migrate(data: dict, path: Path) -> dict:
    """Upgrade an older schema with MIGRATIONS; refuse newer or unknown versions."""
    version = data.get("schema_version")
    if not isinstance(version, int):
        raise BaselineError(f"baseline {path} has no integer schema_version: {_fix(path)}")
    if version > SCHEMA_VERSION:
        raise BaselineError(f"baseline {path} has schema_version {version}, this swavbench reads up to "
                            f"{SCHEMA_VERSION}: upgrade swavbench")
    while version < SCHEMA_VERSION:
        if version not in MIGRATIONS:
            raise BaselineError(f"baseline {path} has schema_version {version} and no migration exists: "
                                f"{_fix(path)}")
        data = MIGRATIONS[version](dict(data))
        version = data["schema_version"] = version + 1
    return data


def _number_in(value: object, low: float, high: float, low_open: bool = False) -> bool:
    return is_number(value) and (low < value if low_open else low <= value) and value <= high


def _long_text(value: object, limit: int = MAX_STORED) -> Optional[str]:
    """The dotted key of the first string longer than `limit` in a nested dict/list, or None."""
    return next((key or "(top level)" for key, item in walk(value) if isinstance(item, str) and len(item) > limit),
                None)


def _validate(data: dict, path: Path) -> None:
    def bad(what: str) -> BaselineError:
        return BaselineError(f"baseline {path} {what}: {_fix(path)}")

    for key, typ in (("case", str), ("profile", str), ("metrics", dict), ("tolerances", dict),
                     ("provenance", dict)):
        if not isinstance(data.get(key), typ):
            raise bad(f"lacks field '{key}'" if key not in data else f"has a bad '{key}'")
    for key in ("case", "profile"):
        problem = name_problem(key, data[key])
        if problem:
            raise bad(f"has a bad '{key}' ({problem})")
    where = non_finite_path(data)
    if where:
        hint = " (a band of Infinity would pass everything)" if where == "tolerances.ips_pct" else ""
        raise bad(f"has {where} that is not a finite number (NaN, Infinity or beyond 2^63){hint}")
    long = _long_text(data)
    if long:
        raise bad(f"has a text longer than {MAX_STORED} characters at '{long}'")
    m, t = data["metrics"], data["tolerances"]
    for key in REQUIRED_METRICS:
        if key not in m:
            raise bad(f"lacks field 'metrics.{key}'")
    if not isinstance(m["loss"], str) or not isinstance(m["marker"], str):
        raise bad("needs metrics.loss and metrics.marker as strings (exact compare)")
    problem = number_text_problem(m["loss"])
    if problem:
        raise bad(f"has a bad metrics.loss: {problem} (expected a printed number like \"7.94836\")")
    if not MARKER_RE.match(m["marker"]):
        raise bad(f"has metrics.marker {shown(m['marker'], 40)}; expected ITER/ITERS_PER_EPOCH like 200/2599")
    for key in ("ips", "ips_steady"):
        if (key == "ips" or m.get(key) is not None) and not _number_in(m.get(key), MIN_IPS, MAX_IPS):
            raise bad(f"needs metrics.{key} as a positive finite number of images/s (got {shown(m.get(key), 40)}, "
                      f"allowed {MIN_IPS:g} to {MAX_IPS:g})")
    if m.get("ips_steady_iqr_pct") is not None and not _number_in(m["ips_steady_iqr_pct"], 0, MAX_TOLERANCE):
        raise bad("needs metrics.ips_steady_iqr_pct as a finite number >= 0")
    if m.get("max_mem") is not None and (not isinstance(m["max_mem"], str) or number_text_problem(m["max_mem"])):
        raise bad("needs metrics.max_mem as a printed number (GB) or null")
    ips_pct = t.get("ips_pct", 5.0)
    if not _number_in(ips_pct, 0, 100, low_open=True) or ips_pct == 100:
        raise bad(f"needs tolerances.ips_pct as a percentage between 0 and 100 (got {shown(ips_pct, 40)})")
    for key, allowed in (("loss", ("exact",)), ("max_mem", ("exact", "ignore"))):
        v = t.get(key, "exact")
        if v not in allowed and not _number_in(v, 0, MAX_TOLERANCE):
            raise bad(f"has tolerances.{key}={shown(v, 40)}; use {' or '.join(map(repr, allowed))} or a finite "
                      "number >= 0")


def from_dict(data: object, path: Union[str, Path] = "<baseline>") -> Baseline:
    """Validate (after migration) and build a Baseline."""
    path = Path(path)
    if not isinstance(data, dict):
        raise BaselineError(f"baseline {path} is not a JSON object: {_fix(path)}")
    data = migrate(data, path)
    _validate(data, path)
    tolerances = {**DEFAULT_TOLERANCES, **data["tolerances"]}
    return Baseline(data["case"], data["profile"], dict(data["metrics"]), tolerances,
                    dict(data["provenance"]), str(data.get("config", "")), SCHEMA_VERSION)


def resolve_baseline_file(path: Union[str, Path]) -> Path:
    """The file as given, else the same relative path in the project home, else the shipped reference
    baseline of the same `<profile>/<case>.json` name.

    `baselines/passl-a100/swav_pt_1n8c_fp16o1.json` then works from any directory and from a wheel.
    """
    path = Path(path)
    if path.exists():
        return path
    from swavbench.paths import project_home
    from swavbench.resources import PACKAGED_BASELINES

    in_home = project_home() / path
    if not path.is_absolute() and in_home.is_file():
        return in_home
    shipped = PACKAGED_BASELINES / path.parent.name / path.name
    return shipped if path.parent.name and shipped.is_file() else path


def load_baseline(path: Union[str, Path]) -> Baseline:
    """Read a baseline file; BaselineError (exit 3, one line) for missing/corrupt/wrong-schema files."""
    path = Path(path)
    try:
        text = read_text(path, MAX_BASELINE_BYTES)
    except FileNotFoundError:
        raise BaselineError(f"no baseline at {path}: record one with swavbench update-baseline "
                            f"{path.stem}") from None
    except NotRegularFile as err:
        raise BaselineError(f"baseline {path} is {err.kind}, not a file: {_fix(path)}") from None
    except OSError as err:
        raise from_os_error(err, f"cannot read baseline {path}") from None
    except JSONInputError as err:
        raise BaselineError(f"baseline {path} {err}: {_fix(path)}") from None
    try:
        data = loads_json(text, allow_non_finite=True)  # NaN / Infinity: refused below, naming the field
    except JSONInputError as err:
        truncated = " (truncated?)" if text.strip() and not text.rstrip().endswith("}") else ""
        what = str(err) if str(err).startswith("not valid JSON") else f"is not valid: {err}"
        what = what.replace("not valid JSON", f"is not valid JSON{truncated}", 1) if what.startswith("not") else what
        raise BaselineError(f"baseline {path} {what}; {_fix(path)}") from None
    return from_dict(data, path)


@dataclass
class Update:
    """What `update_baseline` did: the file read inside the lock, the one written, temp files removed."""

    old: Optional[Baseline]
    new: Baseline
    removed_temps: list[str] = field(default_factory=list)
    old_problem: Optional[str] = None  # why the old file could not be read (it was replaced)


def update_baseline(path: Union[str, Path], make: Callable[[Optional[Baseline]], Baseline],
                    wait_s: Optional[float] = None) -> Update:
    """Read the old baseline, `make(old)` the new one and write it, all under one exclusive lock.

    An unreadable old file is passed as None (`Update.old_problem` says why). Raises what `make` raises
    (nothing written), BaselineError when another writer holds the lock for wait_s (default LOCK_WAIT_S),
    EnvironmentProblem (exit 6) when the folder is not writable (read-only, full, permission).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise from_os_error(err, f"cannot create {path.parent}") from None
    wait_s = LOCK_WAIT_S if wait_s is None else wait_s
    with hold_lock(path.with_name(path.name + ".lock"), path, wait_s, "update-baseline"):
        removed = remove_stale_temps(path)
        old, problem = None, None
        if os.path.lexists(path):
            try:
                old = load_baseline(path)
            except BaselineError as err:
                problem = str(err)
        new = make(old)
        data = to_dict(new)
        from_dict(json.loads(json.dumps(data)), path)  # never write a file we would refuse to load
        replace_file(path, json.dumps(data, sort_keys=True, indent=2, allow_nan=False) + "\n", "baseline")
        return Update(old, new, removed, problem)


def write_baseline(path: Union[str, Path], baseline: Baseline) -> None:
    """Write atomically (temp file in the same dir, fsync, os.replace) under the exclusive lock."""
    update_baseline(path, lambda _old: baseline)


def check_compatible(baseline: Baseline, profile: str, paddle_version: Optional[str],
                     allow_mismatch: bool = False) -> list[str]:
    """Refuse a baseline from other hardware or another paddle version; with allow_mismatch, warnings."""
    problems = []
    if baseline.profile != profile:
        problems.append(f"baseline {baseline.case} was recorded on profile {baseline.profile}, this run is "
                        f"{profile}: compare with baselines/{profile}/{baseline.case}.json (record it with "
                        f"swavbench update-baseline {baseline.case})")
    base_pv = baseline.provenance.get("paddle_version")
    if base_pv and paddle_version and str(base_pv) != str(paddle_version):
        problems.append(f"baseline {baseline.case} was recorded with paddle {base_pv}, this run used paddle "
                        f"{paddle_version}: re-record it with swavbench update-baseline {baseline.case}")
    if problems and not allow_mismatch:
        raise BaselineError(f"{problems[0]}; or pass --allow-mismatch to compare anyway")
    warnings = [f"warning: {p} (--allow-mismatch given)" for p in problems]
    if not base_pv:
        warnings.append(f"warning: baseline {baseline.case} does not record its paddle version")
    return warnings


def device_class(profile: str, provenance: Optional[dict] = None) -> Optional[str]:
    """'cpu' or 'gpu' for a baseline profile (passl-a100 holds PASSL's 8x A100 CI figures); None if unknown."""
    recorded = (provenance or {}).get("device_profile")
    if recorded in ("cpu", "gpu"):
        return recorded
    if profile.startswith("cpu-"):
        return "cpu"
    if profile.startswith(("gpu-", "passl-")):
        return "gpu"
    return None


def config_name(config: object) -> str:
    """A config as a run header or a baseline names it (a path or a PASSL name) -> the PASSL name."""
    name = Path(str(config or "")).name
    return name[: -len(".yaml")] if name.endswith(".yaml") else name


def check_named_baseline(baseline: Baseline, header: Optional[dict], paddle_version: Optional[str],
                         allow_mismatch: bool = False) -> list[str]:
    """`compare LOGDIR --baseline FILE`: the user named the file, so the log is judged against it.

    Refused (BaselineError, exit 3) only when the log's own run header proves another device class (cpu vs
    gpu) or another case; everything else (no header, another machine, another paddle) is a warning line.
    """
    if not header:
        return [f"warning: the log has no run header (a PASSL log?), so its machine is unknown: judged against "
                f"{baseline.profile}/{baseline.case} as named"]
    problems = []
    log_device, base_device = header.get("device"), device_class(baseline.profile, baseline.provenance)
    if log_device in ("cpu", "gpu") and base_device and log_device != base_device:
        problems.append(f"the log ran on {log_device} (its run header) but {baseline.profile}/{baseline.case} "
                        f"is a {base_device} baseline")
    log_config = config_name(header.get("config"))
    if log_config and baseline.config and log_config != baseline.config:
        problems.append(f"the log is a run of {log_config} (its run header) but the baseline is for "
                        f"{baseline.config}")
    if problems and not allow_mismatch:
        raise BaselineError(f"{problems[0]}: name the baseline of this case and device, or pass --allow-mismatch")
    warnings = [f"warning: {p} (--allow-mismatch given)" for p in problems]
    profile = header.get("machine_profile")
    if profile and profile != baseline.profile:
        warnings.append(f"warning: the log ran on {profile}, the baseline was recorded on {baseline.profile}: "
                        "ips and loss digits are compared across machines")
    elif not profile:
        warnings.append("warning: the run header does not name its machine profile (an older swavbench)")
    base_pv = baseline.provenance.get("paddle_version")
    if base_pv and paddle_version and str(base_pv) != str(paddle_version):
        warnings.append(f"warning: the baseline was recorded with paddle {base_pv}, the log ran paddle "
                        f"{paddle_version}")
    return warnings


def _flat(d: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


MAX_DIFF_LINES = 40


def _shown_json(value: object) -> str:
    return cut(json.dumps(value), MAX_SHOWN)


def diff_baselines(old: Optional[Baseline], new: Baseline) -> list[str]:
    """Readable old -> new lines (metrics and tolerances first, then provenance); values and lines bounded."""
    if old is None:
        return [f"new baseline {new.profile}/{new.case}:"] + [
            f"  {k}: {_shown_json(v)}" for k, v in _flat({"metrics": new.metrics}).items()][: MAX_DIFF_LINES + 1]
    a, b = _flat(to_dict(old)), _flat(to_dict(new))
    keys = sorted(set(a) | set(b), key=lambda k: (k.startswith("provenance."), k))
    lines = []
    for k in keys:
        if a.get(k) == b.get(k):
            continue
        extra = ""
        if k == "metrics.ips" and is_number(a.get(k)) and is_number(b.get(k)) and a[k]:
            extra = f" ({(b[k] - a[k]) / a[k] * 100:+.2f}%)"
        lines.append(f"  {cut(k, 80)}: {_shown_json(a.get(k))} -> {_shown_json(b.get(k))}{extra}")
    head = f"baseline {new.profile}/{new.case}: " + ("no change" if not lines else f"{len(lines)} change(s)")
    more = [f"  ... {len(lines) - MAX_DIFF_LINES} more change(s)"] if len(lines) > MAX_DIFF_LINES else []
    return [head] + lines[:MAX_DIFF_LINES] + more
