"""The host allocator setting of a run: glibc's malloc as it comes, or tuned, chosen per CPU vendor.

Paddle's CPU tensors come from malloc. "glibc-tuned" raises the mmap threshold to 32 MiB and keeps freed
memory (trim threshold 2 GiB, top pad 256 MiB), so that a large tensor is not a fresh mmap (and page
faults) every time: `x * 0.5` on 4M floats went 8.5 ms -> 0.6 ms on the AMD EPYC (avx2) it was made on,
and 13 -> 2.4 ms on this project's Intel Xeon (avx512). On the training work itself the Intel figures do
not show a gain (benchmarks/host_allocator.py, docs/performance.md: the CPU profile's trunk at one thread
within +-5%, pair by pair on both sides of 1; ResNet-50 at one thread -2% CPU; at two threads 0.78-1.07
from one session to the next on a loaded machine), and issue 16 measured it slower there. So the setting is
chosen by CPU vendor (`BY_VENDOR`, measured vendors only, others keep glibc's default) and the run header
says which ran and why. `SWAVBENCH_HOST_ALLOCATOR=default|glibc-tuned|glibc-keep|auto` overrides the choice
(the benchmark uses it; glibc-keep is glibc-tuned without the top pad). Light module: no paddle.
"""

from __future__ import annotations

import os
import sys
from typing import Mapping, Optional

from swavbench.errors import ConfigError

ENV = "SWAVBENCH_HOST_ALLOCATOR"
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc malloc.h
SETTINGS: dict[str, tuple[tuple[int, int], ...]] = {
    "default": (),
    "glibc-tuned": ((M_MMAP_THRESHOLD, 32 * 1024 * 1024), (M_TRIM_THRESHOLD, 2**31 - 1),
                    (M_TOP_PAD, 256 * 1024 * 1024)),
    "glibc-keep": ((M_MMAP_THRESHOLD, 32 * 1024 * 1024), (M_TRIM_THRESHOLD, 2**31 - 1)),
}
DESCRIPTIONS = {
    "default": "glibc malloc defaults",
    "glibc-tuned": "glibc mallopt: mmap threshold 32 MiB, trim threshold 2 GiB, top pad 256 MiB",
    "glibc-keep": "glibc mallopt: mmap threshold 32 MiB, trim threshold 2 GiB",
}
BY_VENDOR = {"amd": "glibc-tuned", "intel": "default"}  # measured on each (module doc); others: default


def choose(vendor: str, requested: str = "auto") -> tuple[str, str]:
    """(setting, why) for a CPU of `vendor`; `requested` other than auto names the setting itself."""
    if requested != "auto":
        if requested not in SETTINGS:
            raise ConfigError(f"{ENV}={requested!r}: unknown (auto, {', '.join(SETTINGS)})")
        return requested, f"{ENV}={requested}"
    setting = BY_VENDOR.get(vendor, "default")
    measured = "measured" if vendor in BY_VENDOR else "not measured, glibc's default"
    return setting, f"auto for {vendor or 'unknown'} CPUs ({measured})"


def apply(setting: str) -> Optional[str]:
    """Apply a setting to this process's glibc malloc; None when done, else why it could not be."""
    options = SETTINGS[setting]
    if not options:
        return None
    if not sys.platform.startswith("linux"):
        return "not linux"
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")  # by soname: ctypes.util.find_library would fork `ldconfig -p`
        ok = all(libc.mallopt(option, value) == 1 for option, value in options)
    except (OSError, AttributeError):
        return "no glibc mallopt"
    return None if ok else "mallopt refused"


def tune(vendor: Optional[str] = None, environ: Optional[Mapping[str, str]] = None) -> str:
    """Choose and apply this machine's setting; the run header's `host_allocator` text."""
    env = os.environ if environ is None else environ
    if vendor is None:
        from swavbench.machine import cpu_identity

        vendor = cpu_identity()["vendor"]
    setting, why = choose(vendor, env.get(ENV, "auto") or "auto")
    return describe(setting, why, apply(setting))


def describe(setting: str, why: str, problem: Optional[str] = None) -> str:
    """The header text: what ran and why (or why the chosen setting could not be applied)."""
    if problem is not None:
        return f"default ({setting} chosen, {why}, but {problem})"
    return f"{setting}: {DESCRIPTIONS[setting]} ({why})"
