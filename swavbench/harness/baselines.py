"""Baselines: `baselines/<profile>/<case>.json`, versioned JSON, atomic locked writes, machine profile key.

File layout (schema_version 1, keys sorted, indent 2):
    {"schema_version": 1, "case": "swav_pt_1n8c_fp16o1", "config": "<PASSL long name>", "profile": "...",
     "metrics": {"loss": "7.94836", "ips": 963.2715, "max_mem": "8.37" | null, "marker": "200/2599"},
     "tolerances": {"ips_pct": 5.0, "loss": "exact", "max_mem": "exact" | <GB> | "ignore"},
     "provenance": {"date_utc", "commit", "paddle_version", "machine", "run_id", "command", ...}}
An older file is upgraded on load by MIGRATIONS[v] (v -> v + 1); a newer one is refused.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Union

from swavbench.errors import BaselineError, EnvironmentProblem
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
        if not value or "/" in value or value.startswith("."):
            raise BaselineError(f"bad baseline {what} name {value!r}")
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


def _validate(data: dict, path: Path) -> None:
    def bad(what: str) -> BaselineError:
        return BaselineError(f"baseline {path} {what}: {_fix(path)}")

    for key, typ in (("case", str), ("profile", str), ("metrics", dict), ("tolerances", dict),
                     ("provenance", dict)):
        if not isinstance(data.get(key), typ):
            raise bad(f"lacks field '{key}'" if key not in data else f"has a bad '{key}'")
    m, t = data["metrics"], data["tolerances"]
    for key in REQUIRED_METRICS:
        if key not in m:
            raise bad(f"lacks field 'metrics.{key}'")
    if not isinstance(m["loss"], str) or not isinstance(m["marker"], str):
        raise bad("needs metrics.loss and metrics.marker as strings (exact compare)")
    if isinstance(m["ips"], bool) or not isinstance(m["ips"], (int, float)) or m["ips"] <= 0:
        raise bad("needs metrics.ips as a positive number")
    if m.get("max_mem") is not None and not isinstance(m["max_mem"], str):
        raise bad("needs metrics.max_mem as a string or null")
    ips_pct = t.get("ips_pct", 5.0)
    if isinstance(ips_pct, bool) or not isinstance(ips_pct, (int, float)) or ips_pct <= 0:
        raise bad("needs tolerances.ips_pct as a positive number")
    for key, allowed in (("loss", ("exact",)), ("max_mem", ("exact", "ignore"))):
        v = t.get(key, "exact")
        if v not in allowed and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
            raise bad(f"has tolerances.{key}={v!r}; use {' or '.join(map(repr, allowed))} or a number")


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
    """The file as given, else the shipped reference baseline of the same `<profile>/<case>.json` name.

    `baselines/passl-a100/swav_pt_1n8c_fp16o1.json` then works from any directory and from a wheel.
    """
    path = Path(path)
    if path.exists():
        return path
    from swavbench.paths import PACKAGED_BASELINES

    shipped = PACKAGED_BASELINES / path.parent.name / path.name
    return shipped if path.parent.name and shipped.is_file() else path


def load_baseline(path: Union[str, Path]) -> Baseline:
    """Read a baseline file; BaselineError (exit 3, one line) for missing/corrupt/wrong-schema files."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BaselineError(f"no baseline at {path}: record one with swavbench update-baseline "
                            f"{path.stem}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise BaselineError(f"cannot read baseline {path}: {err}") from None
    try:
        data = json.loads(text)
    except ValueError as err:
        cut = " (truncated?)" if text.strip() and not text.rstrip().endswith("}") else ""
        where = f" (line {err.lineno}, column {err.colno})" if hasattr(err, "lineno") else ""
        raise BaselineError(f"baseline {path} is not valid JSON{cut}: {getattr(err, 'msg', err)}{where}; "
                            f"{_fix(path)}") from None
    return from_dict(data, path)


def _lock(lock_path: Path, target: Path) -> int:
    """Exclusive non-blocking lock on `<file>.lock`; fd returned. A second writer gets BaselineError."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The holder unlinks the lock file on release: make sure we locked the file still at that path.
        if os.fstat(fd).st_ino != os.stat(lock_path).st_ino:
            raise BlockingIOError
    except (BlockingIOError, FileNotFoundError):
        os.close(fd)
        raise BaselineError(f"another update-baseline is writing {target} (lock {lock_path}); "
                            "wait for it to finish") from None
    return fd


def write_baseline(path: Union[str, Path], baseline: Baseline) -> None:
    """Write atomically (temp file in the same dir, fsync, os.replace) under an exclusive lock."""
    path = Path(path)
    data = to_dict(baseline)
    from_dict(json.loads(json.dumps(data)), path)  # never write a file we would refuse to load
    text = json.dumps(data, sort_keys=True, indent=2) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise EnvironmentProblem(f"cannot create {path.parent}: {err.strerror or err}") from None
    lock_path = path.with_name(path.name + ".lock")
    fd = _lock(lock_path, path)
    tmp = None
    try:
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp", delete=False) as fh:
            tmp = fh.name
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(path.parent)
    except OSError as err:
        raise EnvironmentProblem(f"could not write baseline {path}: {err.strerror or err}; "
                                 "the previous file is unchanged") from None
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        lock_path.unlink(missing_ok=True)
        os.close(fd)


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


def diff_baselines(old: Optional[Baseline], new: Baseline) -> list[str]:
    """Readable old -> new lines (metrics and tolerances first, then provenance)."""
    if old is None:
        return [f"new baseline {new.profile}/{new.case}:"] + [
            f"  {k}: {json.dumps(v)}" for k, v in _flat({"metrics": new.metrics}).items()]
    a, b = _flat(to_dict(old)), _flat(to_dict(new))
    keys = sorted(set(a) | set(b), key=lambda k: (k.startswith("provenance."), k))
    lines = []
    for k in keys:
        if a.get(k) == b.get(k):
            continue
        extra = ""
        if k == "metrics.ips" and isinstance(a.get(k), (int, float)) and isinstance(b.get(k), (int, float)):
            extra = f" ({(b[k] - a[k]) / a[k] * 100:+.2f}%)"
        lines.append(f"  {k}: {json.dumps(a.get(k))} -> {json.dumps(b.get(k))}{extra}")
    head = f"baseline {new.profile}/{new.case}: " + ("no change" if not lines else f"{len(lines)} change(s)")
    return [head] + lines
