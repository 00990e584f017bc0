"""Start-up checks: is the right Paddle installed for this host? One line and exit 6 when not.

1. paddle missing: name the install command (`pip install 'swavbench[cpu]'`, or the GPU build);
2. both `paddlepaddle` and `paddlepaddle-gpu` installed: they write the same `paddle/` files, so which build
   runs depends on the install order, and uninstalling either one leaves no `paddle` at all;
3. an NVIDIA GPU visible (`/dev/nvidia*`, `nvidia-smi`) but the installed paddle a CPU build (or one that
   sees no device), unless the CPU was asked for (`--profile cpu`, `Global.device=cpu`).

Light module: checks 1 and 2 read package metadata only; check 3 imports paddle only where an NVIDIA GPU is
visible (swavbench.machine.probe_gpu; a training rank makes it in setup_runtime, once its thread count is
set). Commands that never touch paddle (parse, compare, report, history, cases, data) skip them all.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
from typing import Mapping, Optional

from swavbench.errors import EnvironmentProblem

PADDLE_DISTS = ("paddlepaddle", "paddlepaddle-gpu")
CPU_INSTALL = "pip install 'swavbench[cpu]'"
GPU_INSTALL = ("pip install paddlepaddle-gpu from Paddle's index, then pip install 'swavbench[gpu]' "
               "(README, GPU)")
# Commands that do not need paddle: they read logs, baselines, run records or the history, or list cases.
NO_PADDLE_COMMANDS = frozenset({"parse", "compare", "report", "history", "cases", "data", "env"})
# Commands that use the history / report (pandas: the `report` extra); a training rank never does.
PANDAS_COMMANDS = frozenset({"report", "history", "demo"})


def installed_paddle_dists() -> dict[str, str]:
    """{distribution name: version} of the Paddle builds installed here (package metadata only)."""
    found = {}
    for name in PADDLE_DISTS:
        for spelling in (name, name.replace("-", "_")):
            try:
                found[name] = importlib.metadata.version(spelling)
                break
            except importlib.metadata.PackageNotFoundError:
                continue
    return found


def paddle_importable() -> bool:
    """`import paddle` would find a package (without importing it)."""
    return importlib.util.find_spec("paddle") is not None


def paddle_problem(dists: Mapping[str, str], importable: bool) -> Optional[str]:
    """The install problem, as one line with what to do; None when exactly one Paddle build is usable."""
    if len(dists) > 1:
        both = " and ".join(f"{name} {version}" for name, version in sorted(dists.items()))
        return (f"both {both} are installed: they overwrite each other's paddle/ files, so the build that runs "
                f"is whichever was installed last; keep one: pip uninstall -y paddlepaddle paddlepaddle-gpu, "
                f"then {CPU_INSTALL} (CPU) or {GPU_INSTALL}")
    if not importable and dists:
        name, version = next(iter(dists.items()))
        return (f"{name} {version} is installed but `import paddle` finds nothing (its files were removed, e.g. "
                f"by uninstalling the other Paddle build): pip install --force-reinstall {name}=={version}")
    if not importable:
        return f"paddle is not installed: {CPU_INSTALL} on a CPU machine; on a GPU node {GPU_INSTALL}"
    return None


def check_environment(device: Optional[str] = None, gpu: bool = True) -> None:
    """Raise EnvironmentProblem (exit 6) unless one Paddle build is installed and, when `device` is not
    "cpu", a visible NVIDIA GPU is usable by it. device: "cpu" / "gpu" as asked for, None for automatic.
    gpu=False leaves the GPU probe (which imports paddle) to the caller."""
    problem = paddle_problem(installed_paddle_dists(), paddle_importable())
    if problem:
        raise EnvironmentProblem(problem)
    if gpu and device != "cpu":
        from swavbench.machine import probe_gpu

        problem = probe_gpu().problem()
        if problem:
            raise EnvironmentProblem(problem)


def requested_device(args: argparse.Namespace) -> Optional[str]:
    """The device a command line asked for: "cpu", "gpu" or None (automatic).

    `run`, `update-baseline`, ... say it with `--profile cpu|gpu`; `train` / `eval` with their override set
    (`--profile cpu` sets Global.device=cpu) and `-o Global.device=...`, the last one winning; `demo` is
    the CPU demo.
    """
    if getattr(args, "command", None) == "demo":
        return "cpu"
    profile = getattr(args, "profile", None)
    if getattr(args, "command", None) not in ("train", "eval"):
        return profile if profile in ("cpu", "gpu") else None
    device = None
    if profile:
        from swavbench.train.config import profile_overrides

        for keys, value in profile_overrides(profile, "ContrastiveLearning"):
            device = str(value).lower() if keys == ["Global", "device"] else device
    for item in getattr(args, "override", None) or []:
        key, _, value = item.partition("=")
        if key.strip() == "Global.device":
            device = value.strip().strip("'\"").lower()
    return device if device in ("cpu", "gpu") else None


def check_command(args: argparse.Namespace) -> None:
    """The start-up checks for a parsed CLI command (none for commands that do not need paddle)."""
    command = getattr(args, "command", None)
    if command in PANDAS_COMMANDS and importlib.util.find_spec("pandas") is None:
        raise EnvironmentProblem(f"pandas is not installed (swavbench {command} keeps the run history with it): "
                                 "pip install 'swavbench[report]'")
    if command in NO_PADDLE_COMMANDS:
        return
    if command == "update-baseline" and getattr(args, "from_dirs", None):
        return  # records from kept runs: reads their records only
    # a training rank imports paddle only after its thread count is fixed: it probes the GPU in setup_runtime
    check_environment(requested_device(args), gpu=command != "train")
