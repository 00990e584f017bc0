"""The run's environment, decided once and recorded honestly: device, ranks, threads, precision, memory."""

from __future__ import annotations

import datetime
import os
import random
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np
import paddle

from swavbench.errors import ConfigError, EnvironmentProblem


@dataclass
class Runtime:
    device: str  # "cpu" | "gpu"
    rank: int
    world_size: int
    nnodes: int
    threads: int
    seed: int
    precision_requested: str  # "fp16 O1" | "fp32"
    precision_effective: str
    precision_note: str
    sync_batchnorm: str  # what ran: "SyncBatchNorm" | "BatchNorm (...)"
    max_mem_source: str
    deterministic: bool
    host_allocator: str = "default"

    def header(self) -> dict:
        data = asdict(self)
        data["paddle_version"] = paddle.__version__
        from swavbench.machine import build_record, cpu_identity, machine_profile
        from swavbench.paths import project_home

        data.update(build_record(paddle))  # paddle commit, CUDA, cuDNN, GPU driver, host name
        data["home"] = str(project_home())  # the project home the harness runs in ($SWAVBENCH_HOME)
        data["cpu"] = cpu_identity()  # model, vendor, instruction-set level: what the CPU kernels dispatch to
        data["machine_profile"] = machine_profile(self.threads, "cpu" if self.device == "cpu" else None)
        data["started_utc"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        return data


def _env_int(*names: str, default: int) -> int:
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return int(value)
    return default


def tune_host_allocator() -> str:
    """Keep glibc from returning every large freed block to the OS (and page-faulting it back in).

    Paddle's CPU tensors come from malloc; by default each allocation over the dynamic mmap threshold is a
    fresh mmap, so every elementwise op on a big tensor pays page faults (measured: x * 0.5 on 4M floats
    8.5 ms -> 0.6 ms with this). Returns what was done, for the run header.
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return "default (not linux)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3
        ok = all(libc.mallopt(option, value) == 1 for option, value in (
            (m_mmap_threshold, 32 * 1024 * 1024), (m_trim_threshold, 2**31 - 1), (m_top_pad, 256 * 1024 * 1024)))
    except (OSError, AttributeError):
        return "default (no glibc mallopt)"
    return "glibc mallopt: mmap threshold 32 MiB, trim threshold 2 GiB" if ok else "default (mallopt refused)"


def env_world_size() -> int:
    """The job's world size as paddle.distributed.launch announces it (1 when not launched)."""
    return _env_int("PADDLE_TRAINERS_NUM", "PADDLE_GLOBAL_SIZE", default=1)


def setup_runtime(config: dict) -> Runtime:
    """Pick the device (failing loudly if the requested one is absent), init the process group, seed."""
    glob = config.get("Global") or {}
    requested = str(glob.get("device", "gpu")).lower()
    if requested == "gpu":
        if not paddle.is_compiled_with_cuda() or paddle.device.cuda.device_count() == 0:
            from swavbench.machine import probe_gpu

            problem = probe_gpu().problem()  # a visible NVIDIA GPU that this paddle cannot use: exit 6
            if problem:
                raise EnvironmentProblem(problem)
            raise ConfigError(
                "Global.device=gpu but this paddle has no usable GPU: add --profile cpu "
                "(or -o Global.device=cpu), or install paddlepaddle-gpu"
            )
        paddle.set_device("gpu")  # under launch, paddle maps this to the rank's device (FLAGS_selected_gpus)
    elif requested == "cpu":
        paddle.set_device("cpu")
    else:
        raise ConfigError(f"Global.device: {requested!r} is not supported (gpu or cpu)")

    world_size = env_world_size()
    if world_size > 1:
        import paddle.distributed as dist

        dist.init_parallel_env()
    rank = _env_int("PADDLE_TRAINER_ID", "PADDLE_GLOBAL_RANK", default=0)

    level = str((config.get("FP16") or {}).get("level", "O0")).upper()
    wants_fp16 = level in ("O1", "O2")
    precision_requested = f"fp16 {level}" if wants_fp16 else "fp32"
    if wants_fp16 and requested == "gpu":
        effective, note = precision_requested, f"requested {precision_requested}, ran {precision_requested} on gpu"
    elif wants_fp16:
        effective, note = "fp32", f"requested {precision_requested}, ran fp32 on cpu (paddle AMP is a no-op on cpu)"
    else:
        effective, note = "fp32", "fp32"

    wants_sync = bool((config.get("DistributedStrategy") or {}).get("sync_batchnorm", True))
    if wants_sync and requested == "gpu" and world_size > 1:
        sync = "SyncBatchNorm"
    elif wants_sync and world_size > 1:
        sync = "BatchNorm per rank (SyncBatchNorm requested; paddle has no SyncBatchNorm kernel on cpu)"
    else:
        sync = "BatchNorm"

    deterministic = bool(glob.get("deterministic", False))
    if requested == "gpu" and deterministic:
        paddle.set_flags({"FLAGS_cudnn_deterministic": True})
    for flag, value in (glob.get("flags") or {}).items():
        paddle.set_flags({flag: value})

    seed = int(glob.get("seed", 31))
    return Runtime(
        device=requested, rank=rank, world_size=world_size,
        nnodes=_env_int("PADDLE_NNODES", default=1),
        threads=_env_int("OMP_NUM_THREADS", default=1), seed=seed,
        precision_requested=precision_requested, precision_effective=effective, precision_note=note,
        sync_batchnorm=sync,
        max_mem_source=(
            "paddle.device.cuda.max_memory_allocated (peak allocated device memory)" if requested == "gpu"
            else 'paddle.base.core.host_memory_stat_peak_value("Allocated", 0) (peak allocated host memory)'
        ),
        deterministic=deterministic,
    )


def seed_everything(seed: int) -> None:
    """paddle / numpy / random, as PASSL does with seed + rank."""
    paddle.seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def peak_memory_gb(device: str) -> Optional[float]:
    """Peak allocated memory in GB (1024^3): device memory on GPU, paddle's host allocator on CPU."""
    if device == "gpu":
        return paddle.device.cuda.max_memory_allocated() / 1024**3
    core = getattr(getattr(paddle, "base", None), "core", None) or paddle.fluid.core  # paddle 2.6: fluid
    return core.host_memory_stat_peak_value("Allocated", 0) / 1024**3
