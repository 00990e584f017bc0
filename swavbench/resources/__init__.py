"""Package data: PASSL's SwAV configs (configs/), the override profiles (configs/profiles/) and the
reference baselines PASSL published (baselines/passl-a100/). Read through importlib.resources, so they are
found the same way from a source checkout, an editable install and a wheel."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def resource_path(*parts: str) -> Path:
    """The file or folder `parts` inside the installed package data, as a filesystem path.

    swavbench is installed as plain files (a wheel unpacks into site-packages), so the resource is a real
    directory entry; a zipped install (zipimport) has none and is refused with a one-line error.
    """
    node = resources.files(__name__).joinpath(*parts)
    if not isinstance(node, Path):
        from swavbench.errors import EnvironmentProblem

        raise EnvironmentProblem(f"swavbench's package data ({'/'.join(parts)}) is inside a zip archive: install "
                                 "swavbench as files (pip install swavbench), not as a zipped egg")
    return node


CONFIG_DIR = resource_path("configs")
PROFILE_DIR = CONFIG_DIR / "profiles"
PACKAGED_BASELINES = resource_path("baselines")
