"""Device profiles (`configs/profiles/<name>.yaml`): what a profile sets, and what it derives from the config.

A profile has sections `all` (every config) and `ContrastiveLearning` / `Classification` (by
Global.task_type). A section maps dotted keys to the value the profile SETS (e.g. the small backbone), and
may hold a `derive:` map of dotted keys to a RULE that computes the value FROM THE CONFIG'S OWN VALUE, so
that a change to that key in the PASSL config still reaches the profiled run:
- `batch_ratio`: the config's value x (the profiled DataLoader.Train.sampler.batch_size / the config's):
  the linear scaling rule for learning rates, and batch sizes that follow the training batch;
- `times A/B`: the config's value x A / B (e.g. crop sizes 224 -> 32: `times 32/224`).
Sizes and batch sizes (`size`, `batch_size`) stay whole numbers (rounded, at least 1); anything else becomes
a float (a learning rate of 5 in a config scales to 1.25). A key path may use `*` for every item of a list or mapping,
and a number for one list item; a derive path that matches nothing in a config (a key that config does not
have, e.g. a warm-up start on a schedule without warm-up) derives nothing. A key both set and derived is an
error.
"""

from __future__ import annotations

import copy
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterator

from swavbench.errors import ConfigError

SECTIONS = ("all", "ContrastiveLearning", "Classification")
BATCH_KEY = "DataLoader.Train.sampler.batch_size"


def profile_path(profile: str) -> Path:
    """A profile given by name (`cpu`) or as a path to a YAML file."""
    from swavbench.resources import PROFILE_DIR

    return Path(profile) if profile.endswith((".yaml", ".yml")) else PROFILE_DIR / f"{profile}.yaml"


def read_profile(profile: str, task_type: str) -> tuple[list[tuple[list[str], Any]], dict[str, str]]:
    """(set overrides as (keys, value), derive rules {dotted key: rule}) of a profile for a task type."""
    from swavbench.train.config import _read_yaml

    path = profile_path(profile)
    data = _read_yaml(path)
    if not isinstance(data, dict) or not set(data) <= set(SECTIONS):
        raise ConfigError(f"{path}: a profile has sections {' / '.join(SECTIONS)}")
    sets: list[tuple[list[str], Any]] = []
    rules: dict[str, str] = {}
    for name in ("all", task_type):
        section = dict(data.get(name) or {})
        derive = section.pop("derive", None) or {}
        if not isinstance(derive, dict):
            raise ConfigError(f"{path}: {name}.derive: expected a mapping of dotted keys to rules")
        sets += [(str(k).split("."), v) for k, v in section.items()]
        rules.update({str(k): str(v) for k, v in derive.items()})
    both = sorted(set(rules) & {".".join(k) for k, _ in sets})
    if both:
        raise ConfigError(f"{path}: {both[0]} is both set and derived; keep one")
    for key, rule in rules.items():
        factor_of(rule, Fraction(1), f"{path}: derive {key}")  # a bad rule fails here, not mid-run
    return sets, rules


def factor_of(rule: str, batch_ratio: Fraction, where: str) -> Fraction:
    """The multiplier a rule stands for."""
    words = rule.split()
    if words == ["batch_ratio"]:
        return batch_ratio
    if len(words) == 2 and words[0] == "times" and "/" in words[1]:
        a, _, b = words[1].partition("/")
        if a.isdigit() and b.isdigit() and int(b) > 0:
            return Fraction(int(a), int(b))
    raise ConfigError(f"{where}: unknown rule {rule!r} (use batch_ratio or times A/B)")


def _matches(node: Any, keys: list[str], path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    """(path, value) of every leaf under `node` that the dotted `keys` (with * and list indices) names."""
    if not keys:
        yield path, node
        return
    key, rest = keys[0], keys[1:]
    if isinstance(node, list):
        items = list(enumerate(node)) if key == "*" else ([(int(key), node[int(key)])] if key.isdigit()
                                                             and int(key) < len(node) else [])  # fmt: skip
    elif isinstance(node, dict):
        items = list(node.items()) if key == "*" else ([(key, node[key])] if key in node else [])
    else:
        items = []
    for k, child in items:
        yield from _matches(child, rest, path + (k,))


COUNTS = ("size", "batch_size")  # keys whose derived value stays a whole number (pixels, images)


def _scaled(value: Any, factor: Fraction, key: str, where: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: the config's value {value!r} is not a number, it cannot be derived")
    if key in COUNTS:
        return max(1, int(Fraction(value) * factor + Fraction(1, 2)))
    return float(f"{float(Fraction(value) * factor):.12g}")


def _set_path(config: Any, path: tuple, value: Any) -> None:
    node = config
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value


def _get(config: dict, dotted: str) -> Any:
    node: Any = config
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node


def apply_profile(config: dict, profile: str, task_type: str) -> dict:
    """`config` with the profile applied: its set values, then its derived values (from `config`'s own)."""
    from swavbench.train.config import apply_overrides, schedule_alias

    sets, rules = read_profile(profile, task_type)
    out = apply_overrides(config, sets)
    before, after = _get(config, BATCH_KEY), _get(out, BATCH_KEY)
    ratio = Fraction(after, before) if isinstance(before, int) and isinstance(after, int) and before > 0 else None
    derived: set[tuple] = set()
    for key, rule in rules.items():
        where = f"profile {profile}: derive {key}"
        if rule == "batch_ratio" and ratio is None:
            raise ConfigError(f"{where}: batch_ratio needs an integer {BATCH_KEY} in the config and the profile")
        factor = factor_of(rule, ratio or Fraction(1), where)
        keys = schedule_alias(config, key.split("."))  # Optimizer.LRScheduler.* is Optimizer.lr.* in PASSL's
        for path, value in list(_matches(copy.deepcopy(config), keys)):
            if path not in derived:  # both spellings of one key name it once
                derived.add(path)
                _set_path(out, path, _scaled(value, factor, str(path[-1]), where))
    return out
