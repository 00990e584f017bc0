"""Which machine a run is on: the profile key that names everything that changes its numbers.

A CPU run's loss digits depend on the kernels Paddle, MKL and numpy dispatch to at run time, which depend
on the CPU vendor and on the widest vector instruction set it has (measured: the same 21-step CPU run logs
5.08271 on an Intel Xeon with AVX-512 and 5.08311 on an AMD EPYC with AVX2; docs/verdicts.md, "Machines").
Its speed depends on the model and the threads per rank. So the key is

    cpu-<vendor>-<model>-<isa>-<threads>t     e.g. cpu-intel-xeon-avx512-1t, cpu-amd-epyc-7b13-avx2-1t
    gpu-<model>-x<count>                      e.g. gpu-a100-sxm4-40gb-x8

The paddle version is not in the key: a baseline records it and a mismatch is reported (baselines.py).
Light module: importing it loads nothing heavy; only `probe_gpu` imports paddle, and only on a host where an
NVIDIA GPU is visible. `auto_device` never falls back to the cpu profile on such a host by itself.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
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


def nvidia_evidence(dev: Path = Path("/dev")) -> Optional[str]:
    """What shows an NVIDIA GPU on this host (no paddle import): a device node (Linux; /dev/dxg on WSL2) or
    nvidia-smi on PATH, named for messages; None when nothing does."""
    nodes = sorted(dev.glob("nvidia[0-9]*"))
    if nodes:
        return str(nodes[0])
    if (dev / "dxg").exists():
        return f"{dev / 'dxg'} (WSL2)"
    smi = shutil.which("nvidia-smi")
    return f"nvidia-smi ({smi})" if smi else None


def nvidia_visible() -> bool:
    """A device node (Linux, WSL2) or nvidia-smi: an NVIDIA GPU may be present (no paddle import)."""
    return nvidia_evidence() is not None


@dataclass(frozen=True)
class GpuProbe:
    """What this host shows and what the installed paddle can use of it."""

    evidence: Optional[str]  # nvidia_evidence()
    cuda_build: Optional[bool] = None  # paddle.is_compiled_with_cuda(); None when not probed / no paddle
    count: int = 0
    name: str = ""
    error: str = ""  # why the probe failed (paddle missing, import error, CUDA runtime error)

    @property
    def usable(self) -> bool:
        return bool(self.cuda_build) and self.count > 0

    def problem(self) -> Optional[str]:
        """One line saying why a visible NVIDIA GPU cannot be used, and what to do; None when usable or absent."""
        if self.evidence is None or self.usable:
            return None
        cpu_anyway = "or pass --profile cpu to run on the CPU on purpose"
        if self.error:
            return f"an NVIDIA GPU is visible ({self.evidence}) but paddle cannot use it: {self.error}; {cpu_anyway}"
        if self.cuda_build is False:
            return (f"an NVIDIA GPU is visible ({self.evidence}) but the installed paddle is a CPU build: "
                    f"pip uninstall -y paddlepaddle, then install the GPU build (README, GPU: pip install "
                    f"paddlepaddle-gpu from Paddle's index, then pip install 'swavbench[gpu]'), {cpu_anyway}")
        return (f"an NVIDIA GPU is visible ({self.evidence}) but paddle (built with CUDA) sees no device: check "
                f"the driver (nvidia-smi) and CUDA_VISIBLE_DEVICES, {cpu_anyway}")


def probe_gpu() -> GpuProbe:
    """The GPU this paddle can use. Imports paddle only when an NVIDIA GPU is visible (CPU hosts never do)."""
    evidence = nvidia_evidence()
    if evidence is None:
        return GpuProbe(None)
    try:
        import paddle
    except Exception as err:  # noqa: BLE001 - ImportError, or a broken install's own error
        return GpuProbe(evidence, error=f"import paddle failed ({type(err).__name__}: {err})")
    try:
        if not paddle.is_compiled_with_cuda():
            return GpuProbe(evidence, cuda_build=False)
        count = int(paddle.device.cuda.device_count())
        return GpuProbe(evidence, True, count, paddle.device.cuda.get_device_name(0) if count > 0 else "")
    except Exception as err:  # noqa: BLE001 - a CUDA runtime / driver failure is reported, not hidden
        return GpuProbe(evidence, cuda_build=True, error=f"{type(err).__name__}: {err}")


def detect_gpu() -> Optional[tuple[str, int]]:
    """(device name, count) when paddle is built with CUDA and a device exists; None otherwise."""
    probe = probe_gpu()
    return (probe.name, probe.count) if probe.usable else None


def auto_device() -> str:
    """The device profile when none was asked for: gpu when paddle can use a GPU here, else cpu.

    Never cpu by itself on a GPU node: a visible NVIDIA GPU that paddle cannot use is an EnvironmentProblem
    (exit 6) that says why; `--profile cpu` runs on the CPU on purpose.
    """
    if detect_gpu():
        return "gpu"
    problem = probe_gpu().problem()
    if problem:
        from swavbench.errors import EnvironmentProblem

        raise EnvironmentProblem(problem)
    return "cpu"


def gpu_driver_version(proc: Path = Path("/proc/driver/nvidia/version")) -> Optional[str]:
    """The NVIDIA kernel driver version ('535.129.03'): /proc/driver/nvidia/version, else nvidia-smi; None."""
    try:
        m = re.search(r"Kernel Module\s+(?:for \S+\s+)?([0-9][0-9.]+)", proc.read_text(errors="replace"))
        if m:
            return m.group(1)
    except OSError:
        pass
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    import subprocess

    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=15, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = out.stdout.strip().splitlines() if out.returncode == 0 else []
    return lines[0].strip() if lines and lines[0].strip() else None


def _version_call(version_module: object, name: str) -> Optional[str]:
    """paddle.version.cuda() / cudnn(): the string, or None on a CPU build (which answers 'False')."""
    fn = getattr(version_module, name, None)
    try:
        value = fn() if callable(fn) else fn
    except Exception:  # noqa: BLE001 - an old or odd build: the field is unknown, not fatal
        return None
    value = str(value).strip() if value is not None else ""
    return value if value and value not in ("False", "0", "None") else None


def paddle_build(paddle: object) -> dict:
    """paddle's version, git commit, CUDA and cuDNN versions (None when a CPU build or not said)."""
    version = getattr(paddle, "version", None)
    commit = getattr(version, "commit", None)
    return {
        "paddle_version": str(getattr(paddle, "__version__", "") or "") or None,
        "paddle_commit": str(commit) if commit else None,
        "cuda_version": _version_call(version, "cuda"),
        "cudnn_version": _version_call(version, "cudnn"),
    }


def build_record(paddle: object) -> dict:
    """What the run header records of the software and host: paddle's version and git commit, CUDA, cuDNN,
    the NVIDIA driver (None where there is none) and the host name."""
    import socket

    return {**paddle_build(paddle), "gpu_driver": gpu_driver_version(), "hostname": socket.gethostname()}


def default_threads() -> int:
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)


def machine_profile(threads: Optional[int] = None, device: Optional[str] = None) -> str:
    """Profile key of this machine: `gpu-<model>-x<count>` or `cpu-<vendor>-<model>-<isa>-<threads>t`.

    threads defaults to OMP_NUM_THREADS, else the CPU count; device="cpu" skips the GPU probe. Otherwise a GPU
    that paddle cannot use is an EnvironmentProblem (device="gpu", or one visible here), never a cpu key.
    """
    if device != "cpu":
        gpu = detect_gpu()
        if gpu:
            return gpu_profile(*gpu)
        problem = probe_gpu().problem()
        if problem or device == "gpu":
            from swavbench.errors import EnvironmentProblem

            raise EnvironmentProblem(problem or "a gpu run, but paddle sees no GPU on this host: run it where the "
                                     "GPU is, or pass --profile cpu")
    ident = cpu_identity()
    return cpu_profile(ident["model"], threads or default_threads(), ident["isa"], ident["vendor"])
