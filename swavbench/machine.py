"""Which machine a run is on: the profile key that names everything that changes its numbers.

A CPU run's loss digits depend on the kernels Paddle, MKL and numpy dispatch to at run time, which depend
on the CPU vendor and on the widest vector instruction set it has (measured: the same 21-step CPU run logs
5.08271 on an Intel Xeon with AVX-512 and 5.08311 on an AMD EPYC with AVX2; docs/verdicts.md, "Machines").
Its speed depends on the model and the threads per rank. So the key is

    cpu-<vendor>-<model>-<isa>-<threads>t     e.g. cpu-intel-xeon-avx512-1t, cpu-amd-epyc-7b13-avx2-1t
    gpu-<model>-x<count>                      e.g. gpu-a100-sxm4-40gb-x8

The paddle version is not in the key: a baseline records it and a mismatch is reported (baselines.py).
Light module: importing it loads nothing heavy; only `detect_gpu` imports paddle, and only on a GPU host.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Optional

# The widest level whose flags are all present names the CPU (x86-64 micro-architecture levels v4..v2,
# which is also how MKL, oneDNN, Paddle's JIT kernels and numpy choose their code paths).
X86_ISA_LEVELS = (
    ("avx512", {"avx512f", "avx512bw", "avx512dq", "avx512vl"}),
    ("avx2", {"avx2", "fma", "bmi2"}),
    ("avx", {"avx"}),
    ("sse4", {"sse4_2", "popcnt"}),
)
ARM_ISA_LEVELS = (("sve", {"sve"}), ("neon", {"asimd"}))
VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd", "HygonGenuine": "hygon", "CentaurHauls": "centaur"}


def slugify(text: str) -> str:
    """'Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz' -> 'intel-xeon-platinum-8375c'."""
    text = re.sub(r"\((r|tm|c)\)", " ", text.lower())
    text = re.sub(r"@.*$", " ", text)
    text = re.sub(r"\b(nvidia|cpu|processor|with radeon graphics)\b", " ", text)
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"


def _field(cpuinfo: str, key: str) -> str:
    m = re.search(rf"^{key}\s*:\s*(.*)$", cpuinfo, re.M)
    return m.group(1).strip() if m else ""


def cpu_model(cpuinfo: str) -> str:
    """The CPU model from /proc/cpuinfo text (x86 `model name`, else ARM `Hardware`/`Model`)."""
    for key in ("model name", "Hardware", "Model", "cpu model"):
        value = _field(cpuinfo, key)
        if value:
            return value
    return ""


def cpu_vendor(cpuinfo: str) -> str:
    """'intel', 'amd', ... from `vendor_id` (x86), '' when /proc/cpuinfo does not say."""
    vendor = _field(cpuinfo, "vendor_id")
    return VENDORS.get(vendor, slugify(vendor) if vendor else "")


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags of the first CPU (`flags` on x86, `Features` on ARM)."""
    return set((_field(cpuinfo, "flags") or _field(cpuinfo, "Features")).split())


def isa_level(flags: set[str]) -> str:
    """The widest vector instruction-set level the flags provide: avx512, avx2, avx, sse4, sve, neon, or base."""
    for name, needed in X86_ISA_LEVELS + ARM_ISA_LEVELS:
        if needed <= flags:
            return name
    return "base"


def cpu_profile(model: str, threads: int, isa: str = "", vendor: str = "") -> str:
    """`cpu-<vendor>-<model>-<isa>-<threads>t` (the vendor is added when the model string lacks it)."""
    slug = slugify(model)
    if vendor and vendor != "unknown" and not slug.startswith(vendor):
        slug = f"{vendor}-{slug}"
    return f"cpu-{slug}-{isa}-{threads}t" if isa else f"cpu-{slug}-{threads}t"


def gpu_profile(name: str, count: int) -> str:
    return f"gpu-{slugify(name)}-x{count}"


def read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


def cpu_identity(cpuinfo: Optional[str] = None) -> dict:
    """{"model", "vendor", "isa"} of this CPU, as the profile key and the run header record them."""
    text = read_cpuinfo() if cpuinfo is None else cpuinfo
    model = cpu_model(text)
    if not model:
        import platform

        model = platform.processor() or platform.machine()
    return {"model": model, "vendor": cpu_vendor(text), "isa": isa_level(cpu_flags(text))}


def nvidia_visible() -> bool:
    """A device node (Linux, WSL2) or nvidia-smi: an NVIDIA GPU may be present (no paddle import)."""
    return bool(any(Path("/dev").glob("nvidia[0-9]*")) or Path("/dev/dxg").exists() or shutil.which("nvidia-smi"))


def detect_gpu() -> Optional[tuple[str, int]]:
    """(device name, count) when paddle is built with CUDA and a device exists; None otherwise."""
    if not nvidia_visible():  # CPU-only hosts never import paddle here
        return None
    try:
        import paddle

        if not paddle.is_compiled_with_cuda():
            return None
        count = paddle.device.cuda.device_count()
        return (paddle.device.cuda.get_device_name(0), count) if count > 0 else None
    except Exception:  # noqa: BLE001 - any probe failure means "no usable GPU"
        return None


def default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


def machine_profile(threads: Optional[int] = None, device: Optional[str] = None) -> str:
    """Profile key of this machine: `gpu-<model>-x<count>` or `cpu-<vendor>-<model>-<isa>-<threads>t`.

    threads defaults to OMP_NUM_THREADS, else the CPU count; device="cpu" skips the GPU probe.
    """
    if device != "cpu":
        gpu = detect_gpu()
        if gpu:
            return gpu_profile(*gpu)
    ident = cpu_identity()
    return cpu_profile(ident["model"], threads or default_threads(), ident["isa"], ident["vendor"])
