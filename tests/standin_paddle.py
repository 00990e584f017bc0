"""Stand-ins for the install tests: a tiny `paddle` package under the distribution name `paddlepaddle` or
`paddlepaddle-gpu`, as a wheel (for pip) or as a folder for PYTHONPATH, and a fake `nvidia-smi`.

The package answers only what swavbench's start-up checks and `swavbench env` ask: `__version__`,
`is_compiled_with_cuda()`, `version.commit` / `cuda()` / `cudnn()`, `device.cuda.device_count()` and
`get_device_name()`. It cannot train; the tests that use it never launch a rank.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import zipfile
from pathlib import Path

GPU_NAME = "NVIDIA A100-SXM4-40GB"
DRIVER = "535.129.03"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def package_files(version: str, cuda: bool, devices: int = 8) -> dict[str, str]:
    """The stand-in's `paddle/` files: a CUDA build (`cuda=True`, 11.8 / cuDNN 8.9.7) or a CPU build."""
    return {
        "paddle/__init__.py": (f'"""Stand-in paddle {version} for swavbench\'s install tests."""\n'
                               f'__version__ = "{version}"\nfrom . import device, version  # noqa: E402\n\n\n'
                               f"def is_compiled_with_cuda():\n    return {cuda}\n"),
        "paddle/version/__init__.py": (f'full_version = "{version}"\ncommit = "{COMMIT}"\n\n\n'
                                       f'def cuda():\n    return "{"11.8" if cuda else "False"}"\n\n\n'
                                       f'def cudnn():\n    return "{"8.9.7" if cuda else "False"}"\n'),
        "paddle/device/__init__.py": "from . import cuda  # noqa: F401\n",
        "paddle/device/cuda.py": (f"def device_count():\n    return {devices if cuda else 0}\n\n\n"
                                  f'def get_device_name(index=0):\n    return "{GPU_NAME}"\n'),
    }


def _dist_info(dist: str, version: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', dist)}-{version}.dist-info"


def _metadata(dist: str, version: str) -> str:
    return f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\nSummary: stand-in for tests\n"


def write_tree(root: Path, dist: str, version: str, cuda: bool) -> Path:
    """The stand-in as installed files under `root` (put `root` first on PYTHONPATH): package + metadata."""
    for rel, text in package_files(version, cuda).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    info = root / _dist_info(dist, version)
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(_metadata(dist, version))
    return root


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def write_wheel(out_dir: Path, dist: str, version: str, cuda: bool) -> Path:
    """A pure-Python wheel of the stand-in (`<dist>-<version>-py3-none-any.whl`) in `out_dir`."""
    info = _dist_info(dist, version)
    files = {rel: text.encode() for rel, text in package_files(version, cuda).items()}
    files[f"{info}/METADATA"] = _metadata(dist, version).encode()
    files[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: swavbench-tests\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n")
    record = [_record_line(name, data) for name, data in files.items()] + [f"{info}/RECORD,,"]
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    out_dir.mkdir(parents=True, exist_ok=True)
    wheel = out_dir / f"{re.sub(r'[-_.]+', '_', dist)}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return wheel


def write_index(root: Path, wheels: list[Path]) -> str:
    """A PEP 503 simple index (one folder per project, an index.html of links) for `pip install -i URL`."""
    by_project: dict[str, list[Path]] = {}
    for wheel in wheels:
        project = re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower()
        by_project.setdefault(project, []).append(wheel)
    for project, files in by_project.items():
        folder = root / project
        folder.mkdir(parents=True, exist_ok=True)
        links = "".join(f'<a href="{w.resolve().as_uri()}">{w.name}</a>\n' for w in files)
        (folder / "index.html").write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    return root.resolve().as_uri() + "/"


def fake_nvidia_smi(bin_dir: Path) -> Path:
    """An `nvidia-smi` on PATH that shows one GPU and answers the driver-version query."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\ncase "$*" in *driver_version*) echo "{DRIVER}";; *) echo "GPU 0: {GPU_NAME}";; '
                   "esac\n")
    smi.chmod(0o755)
    return smi


def without_paddle(site_packages: Path, out: Path) -> Path:
    """A folder of links to everything in `site_packages` but Paddle (package and metadata), for
    `python -S` with PYTHONPATH: an interpreter on which paddle is not installed."""
    out.mkdir(parents=True, exist_ok=True)
    for entry in site_packages.iterdir():
        if not re.match(r"(paddle|paddlepaddle)", entry.name.lower()):
            os.symlink(entry, out / entry.name)
    return out
