"""The project home: where a team's baselines, reports, data cache and history live (light module).

The home is the directory the user chooses, found the way pytest finds its rootdir:

1. `--home DIR` (CLI) / `--swavbench-home DIR` (pytest), pinned for the process with `use_home`;
2. else `$SWAVBENCH_HOME`;
3. else the nearest ancestor of the current directory (itself included) holding a `swavbench.toml` file or
   a `baselines/` folder;
4. else the current directory.

Inside it: `baselines/<profile>/<case>.json`, `reports/runs/<run-id>/`, `reports/history.sqlite`,
`reports/index.html`, `data/cache/` (generated datasets, the short pre-train; `$SWAVBENCH_CACHE_DIR`
overrides it) and, optionally, `swavbench.toml` (the team's own cases). Package data (PASSL's configs, the
override profiles, the reference baselines) ships inside the package: `swavbench.resources`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

HOME_ENV = "SWAVBENCH_HOME"
CACHE_ENV = "SWAVBENCH_CACHE_DIR"
CONFIG_FILE = "swavbench.toml"
HOME_MARKERS = (CONFIG_FILE, "baselines")

_pinned: Optional[Path] = None


def find_home(start: Union[str, Path]) -> Path:
    """The nearest ancestor of `start` (itself included) holding `swavbench.toml` or `baselines/`; else `start`."""
    start = Path(start).resolve()
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file() or (folder / "baselines").is_dir():
            return folder
    return start


def project_home(explicit: Optional[Union[str, Path]] = None, cwd: Optional[Union[str, Path]] = None) -> Path:
    """The home: `explicit`, else the pinned one (`use_home`), else $SWAVBENCH_HOME, else found from `cwd`."""
    for chosen in (explicit, _pinned, os.environ.get(HOME_ENV) or None):
        if chosen:
            return Path(chosen).expanduser().resolve()
    return find_home(cwd or Path.cwd())


def use_home(home: Optional[Union[str, Path]]) -> Optional[Path]:
    """Pin the home for this process (None unpins); returns the previous pin. The CLI and the plugin call it
    once at start-up, so every command, the plugin and the deep helpers (data cache) agree."""
    global _pinned
    previous = _pinned
    _pinned = Path(home).expanduser().resolve() if home else None
    return previous


@dataclass(frozen=True)
class Home:
    """The locations inside one project home."""

    root: Path

    @property
    def baselines(self) -> Path:
        return self.root / "baselines"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def runs(self) -> Path:
        return self.reports / "runs"

    @property
    def history_db(self) -> Path:
        return self.reports / "history.sqlite"

    @property
    def report_html(self) -> Path:
        return self.reports / "index.html"

    @property
    def cache(self) -> Path:
        return Path(os.environ.get(CACHE_ENV) or self.root / "data" / "cache")

    @property
    def config_file(self) -> Path:
        return self.root / CONFIG_FILE


def home(explicit: Optional[Union[str, Path]] = None) -> Home:
    """The locations of the current project home (see `project_home`)."""
    return Home(project_home(explicit))


def cache_dir() -> Path:
    """Where generated datasets and the short CPU pre-train are cached: $SWAVBENCH_CACHE_DIR, else <home>/data/cache."""
    return home().cache


def relative_to_home(path: Union[str, Path]) -> str:
    """`path` relative to the home when inside it (e.g. `baselines/<profile>/<case>.json`), else as given."""
    try:
        return str(Path(path).resolve().relative_to(project_home()))
    except ValueError:
        return str(path)


def source_checkout() -> Optional[Path]:
    """The source tree this package runs from (a git checkout, e.g. `pip install -e .`), or None from a wheel."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / ".git").exists() else None
