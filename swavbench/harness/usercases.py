"""A team's own cases, beside the four built-in ones: from the project home's `swavbench.toml`, from a
TOML / YAML file it names, or from Python (a list of mappings or `Case` objects given to the fixture).

    # swavbench.toml (in the project home)
    case_files = ["more_cases.yaml"]        # optional: YAML (a list, or {cases: [...]}) or TOML files
    [[case]]
    id = "tiny_pt_1n2c"
    base = "swav_pt_1n8c_fp16o1"           # start from a built-in (or earlier) case: every field optional
    cpu = {devices_per_node = 2, max_train_step = 6}
    cpu_data = {classes = 4, train_per_class = 40}
    overrides = ["Optimizer.LRScheduler.learning_rate=0.3"]

Without `base` a case names `config` (a PASSL config name, or a file relative to the case file), `task`
(pt / lp / ft), `cpu` and `gpu` (nnodes, devices_per_node, max_train_step, print_batch_step); the marker
a run is judged at is computed from the data it reads (`passl_marker` is optional: the line PASSL's own
logs of the case are read at). Errors are one line naming the file, the case and the field (ConfigError, exit 3).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Union

from swavbench.errors import ConfigError
from swavbench.harness.cases import CASES, Case, Scale, SynthData, Tolerances

ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
TASKS = ("pt", "lp", "ft")
SCALE_KEYS = {f.name: f.type for f in fields(Scale)}
DATA_KEYS = {f.name for f in fields(SynthData)}
TOLERANCE_KEYS = {"ips_pct", "loss", "max_mem"}
SIMPLE = {"passl_name": str, "passl_marker": str, "warmup_lines": int, "metric": str, "deterministic": bool,
          "needs_pretrained": bool, "note": str}
LISTS = {"overrides": "extra_overrides", "cpu_overrides": "cpu_overrides"}
TABLES = ("cpu", "gpu", "cpu_data", "tolerances", "cpu_tolerances")
KNOWN = {"id", "base", "config", "task", *SIMPLE, *LISTS, *TABLES}
REQUIRED_WITHOUT_BASE = ("config", "task", "cpu", "gpu")

CaseLike = Union[Case, Mapping[str, Any]]
_registered: dict[str, Case] = {}  # cases given from Python in this process (the fixture, add_cases)
_file_cache: dict[tuple[str, float], tuple[Case, ...]] = {}


def _suggest(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, sorted(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


class _Where:
    """Names the place of an error: `<file>: case[<n>] (<id>): <field>`."""

    def __init__(self, source: str, index: int, case_id: str = "") -> None:
        self.source, self.index, self.case_id = source, index, case_id

    def error(self, what: str, field: str = "") -> ConfigError:
        name = f" ({self.case_id})" if self.case_id else ""
        return ConfigError(f"{self.source}: case[{self.index}]{name}: {field + ': ' if field else ''}{what}")


def _int(value: Any, where: _Where, field: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise where.error(f"expected an integer >= {minimum}, got {value!r}", field)
    return value


def _table(data: Mapping, key: str, where: _Where) -> Mapping:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise where.error(f"expected a table of fields, got {value!r}", key)
    return value


def _scale(base: Optional[Scale], table: Mapping, where: _Where, key: str) -> Scale:
    for k in table:
        if k not in SCALE_KEYS:
            raise where.error(f"unknown field{_suggest(k, SCALE_KEYS)}; known: {', '.join(SCALE_KEYS)}", f"{key}.{k}")
    values = {k: (str(v) if k == "note" else _int(v, where, f"{key}.{k}")) for k, v in table.items()}
    if base is not None:
        return replace(base, **values)
    missing = [k for k in ("nnodes", "devices_per_node", "max_train_step", "print_batch_step") if k not in values]
    if missing:
        raise where.error(f"missing {', '.join(missing)}", key)
    return Scale(**values)


def _tolerances(base: Tolerances, table: Mapping, where: _Where, key: str) -> Tolerances:
    for k, v in table.items():
        if k not in TOLERANCE_KEYS:
            raise where.error(f"unknown field{_suggest(k, TOLERANCE_KEYS)}", f"{key}.{k}")
        if k == "ips_pct" and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
            raise where.error(f"expected a positive number, got {v!r}", f"{key}.{k}")
    return replace(base, **{k: (float(v) if k == "ips_pct" else v) for k, v in table.items()})


def _config(value: Any, base_dir: Optional[Path], where: _Where) -> str:
    """A PASSL config name shipped in the package, or a YAML file relative to the case file (made absolute)."""
    from swavbench.train.config import CONFIG_DIR, resolve_config_path

    if not isinstance(value, str) or not value:
        raise where.error(f"expected a config name or path, got {value!r}", "config")
    local = (base_dir / value) if base_dir is not None else Path(value)
    if local.is_file():
        return str(local.resolve())
    if resolve_config_path(value).is_file() and not Path(value).is_absolute():
        return value
    raise where.error(f"no such config file or shipped config name (shipped: {CONFIG_DIR})", "config")


def _case_default(name: str) -> Any:
    """A Case field's own default (e.g. the CPU tolerances' +-20% ips band)."""
    field = next(f for f in fields(Case) if f.name == name)
    return field.default_factory()  # type: ignore[misc]


def _base_case(name: Any, known: Mapping[str, Case], where: _Where) -> Case:
    for case in known.values():
        if name in (case.id, case.passl_name, case.config):
            return case
    raise where.error(f"unknown case {name!r}{_suggest(str(name), known)}; known: {', '.join(known)}", "base")


def case_from_mapping(data: Mapping, known: Mapping[str, Case], source: str = "<python>", index: int = 0,
                      base_dir: Optional[Path] = None) -> Case:
    """One user case from its mapping; `known` are the cases it may start from (`base`) and must not repeat."""
    where = _Where(source, index)
    if not isinstance(data, Mapping):
        raise where.error(f"expected a table of fields, got {type(data).__name__}")
    case_id = data.get("id")
    if not isinstance(case_id, str) or not ID_RE.match(case_id):
        raise where.error(f"expected an id of letters, digits, _ . - (a file name), got {case_id!r}", "id")
    where.case_id = case_id
    if case_id in known:
        raise where.error(f"the id {case_id!r} is taken by another case", "id")
    for key in data:
        if key not in KNOWN:
            raise where.error(f"unknown field{_suggest(str(key), KNOWN)}; known: {', '.join(sorted(KNOWN))}", key)
    base = _base_case(data["base"], known, where) if "base" in data else None
    if base is None:
        missing = [k for k in REQUIRED_WITHOUT_BASE if k not in data]
        if missing:
            raise where.error(f"missing {', '.join(missing)} (or name a `base` case to start from)")
    values: dict[str, Any] = {"id": case_id}
    if "config" in data or base is None:
        values["config"] = _config(data.get("config"), base_dir, where)
    if "task" in data:
        if data["task"] not in TASKS:
            raise where.error(f"expected one of {', '.join(TASKS)}, got {data['task']!r}", "task")
        values["task"] = data["task"]
    for key, kind in SIMPLE.items():
        if key in data:
            if isinstance(data[key], bool) is not (kind is bool) or not isinstance(data[key], kind):
                raise where.error(f"expected {kind.__name__}, got {data[key]!r}", key)
            values[key] = data[key]
    for key, attr in LISTS.items():
        if key in data:
            items = data[key]
            if not isinstance(items, (list, tuple)) or not all(isinstance(i, str) and "=" in i for i in items):
                raise where.error("expected a list of 'Section.key=value' strings", key)
            values[attr] = tuple(items)
    for key in ("cpu", "gpu"):
        if key in data or base is None:
            values[key] = _scale(getattr(base, key, None), _table(data, key, where), where, key)
    if "cpu_data" in data:
        table = _table(data, "cpu_data", where)
        for k, v in table.items():
            if k not in DATA_KEYS:
                raise where.error(f"unknown field{_suggest(k, DATA_KEYS)}", f"cpu_data.{k}")
            _int(v, where, f"cpu_data.{k}", minimum=0 if k in ("seed", "val_per_class") else 1)
        values["cpu_data"] = replace(base.cpu_data if base else SynthData(), **table)
    for key in ("tolerances", "cpu_tolerances"):
        if key in data:
            start = getattr(base, key) if base else _case_default(key)
            values[key] = _tolerances(start, _table(data, key, where), where, key)
    if base is not None:
        if "task" in data and "needs_pretrained" not in data:
            values["needs_pretrained"] = data["task"] != "pt"
        return replace(base, passl_name=values.pop("passl_name", case_id), **values)
    values.setdefault("passl_name", case_id)
    values.setdefault("passl_marker", "")  # only PASSL's own logs need it; a run's marker comes from its data
    values.setdefault("needs_pretrained", values["task"] != "pt")
    return Case(**values)


def read_case_file(path: Union[str, Path]) -> tuple[list, list[str]]:
    """(case mappings, case_files named) of a TOML (`[[case]]`) or YAML (a list, or `cases:`) file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the case file ({err.strerror or err})") from None
    if path.suffix == ".toml":
        data = _toml(text, path)
        known_top = {"case", "case_files"}
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML ({getattr(err, 'problem', err)})") from None
        data = {"case": data} if isinstance(data, list) else (data or {})
        data = {"case": data.pop("cases")} if isinstance(data, dict) and "cases" in data else data
        known_top = {"case", "case_files"}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a list of cases or a table with `case`")
    for key in data:
        if key not in known_top:
            raise ConfigError(f"{path}: {key}: unknown setting{_suggest(key, known_top)}; known: case, case_files")
    cases, files = data.get("case", []), data.get("case_files", [])
    if not isinstance(cases, list):
        raise ConfigError(f"{path}: case: expected a list of case tables ([[case]] in TOML)")
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise ConfigError(f"{path}: case_files: expected a list of file names")
    return cases, files


def _toml(text: str, path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python < 3.11: the tomli backport (a dependency there)
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None


def load_case_file(path: Union[str, Path], known: Optional[Mapping[str, Case]] = None,
                   _seen: Optional[set] = None) -> tuple[Case, ...]:
    """The cases of a case file and of the case files it names (relative to it), in order."""
    path = Path(path).resolve()
    seen = _seen if _seen is not None else set()
    if path in seen:
        raise ConfigError(f"{path}: case_files names a file already read (a loop)")
    seen.add(path)
    known = dict(known if known is not None else _builtin())
    entries, files = read_case_file(path)
    out: list[Case] = []
    for n, entry in enumerate(entries):
        case = case_from_mapping(entry, known, str(path), n, path.parent)
        known[case.id] = case
        out.append(case)
    for name in files:
        more = load_case_file(path.parent / name, known, seen)
        known.update((c.id, c) for c in more)
        out += more
    return tuple(out)


def _builtin() -> dict[str, Case]:
    return {c.id: c for c in CASES}


def home_cases() -> tuple[Case, ...]:
    """The cases of the project home's swavbench.toml (none without one); re-read when the file changes."""
    from swavbench.paths import home

    path = home().config_file
    if not path.is_file():
        return ()
    key = (str(path), path.stat().st_mtime)
    if key not in _file_cache:
        _file_cache[key] = load_case_file(path)
    return _file_cache[key]


def user_cases() -> tuple[Case, ...]:
    """The home's cases, then those registered from Python."""
    from_home = home_cases()
    return from_home + tuple(c for c in _registered.values() if c.id not in {h.id for h in from_home})


def all_cases() -> tuple[Case, ...]:
    """The built-in cases, then the user's."""
    return CASES + user_cases()


def register(*specs: CaseLike) -> list[Case]:
    """Add cases from Python (mappings as in swavbench.toml, or Case objects) for this process; returns them.

    Registering the same case again is a no-op; another case under a taken id is a ConfigError.
    """
    out = []
    for n, spec in enumerate(specs):
        known = {c.id: c for c in all_cases()}
        if isinstance(spec, Case):
            case = spec
        elif isinstance(spec, Mapping) and known.get(spec.get("id")) is not None and spec.get("id") in _registered:
            previous = _registered[spec["id"]]
            known.pop(spec["id"])
            case = case_from_mapping(spec, known, "<python>", n)
            if case != previous:
                raise ConfigError(f"<python>: case[{n}] ({spec['id']}): id: registered before with other fields")
        else:
            case = case_from_mapping(spec, known, "<python>", n)
        taken = known.get(case.id)
        if taken is not None and taken != case:
            raise ConfigError(f"<python>: case[{n}] ({case.id}): id: the id {case.id!r} is taken by another case")
        if taken is None:  # a built-in or home case given as a Case object is already known
            _registered[case.id] = case
        out.append(case)
    return out


def clear_registered() -> None:
    """Forget the cases registered from Python (tests, and the end of a pytest session)."""
    _registered.clear()
