"""The run's environment, decided once and recorded honestly: device, ranks, threads, precision, memory."""

from __future__ import annotations

import datetime
import os
import random
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np
import paddle

from swavbench.errors import ConfigError, EnvironmentProblem
from swavbench.train import gpu


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
    flags: dict = field(default_factory=dict)  # paddle FLAGS set (and cuDNN ones skipped on cpu)
    gpu_paths: dict = field(default_factory=dict)  # each GPU-only branch: ran here? exercised by which CPU test
    amp: Any = None  # the gpu.AmpPlan (not in the header)
    rendezvous: str = "none (one process)"  # how the process group formed (swavbench.train.rendezvous)

    def header(self) -> dict:
        data = asdict(self)
        data.pop("amp")
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
    """Apply this CPU's host allocator setting (swavbench.train.host_allocator); what ran, for the header."""
    from swavbench.train.host_allocator import tune

    return tune()


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
    rank = _env_int("PADDLE_TRAINER_ID", "PADDLE_GLOBAL_RANK", default=0)
    rendezvous = "none (one process)"
    if world_size > 1 and requested == "cpu":
        from swavbench.train.rendezvous import form_process_group

        rendezvous = form_process_group(rank)
    elif world_size > 1:
        import paddle.distributed as dist

        dist.init_parallel_env()
        rendezvous = "paddle default"

    amp = gpu.amp_plan(config, requested)
    effective = amp.requested if gpu.amp_takes_effect(amp) else "fp32"
    note = f"requested {amp.requested}, ran {effective} on {requested} ({amp.reason})" if amp.entered or (
        amp.requested != "fp32") else "fp32"
    if amp.entered and effective == "fp32":
        note += f"; paddle {paddle.__version__} ignores auto_cast here: a probe matmul stays float32"

    wants_sync = bool((config.get("DistributedStrategy") or {}).get("sync_batchnorm", True))
    sync = gpu.sync_batchnorm_mode(wants_sync, requested, world_size)

    flags = gpu.runtime_flags(glob, requested)
    applied = gpu.apply_flags(flags, requested)
    deterministic = bool(glob.get("deterministic", False)) or gpu.flags_deterministic(flags)
    mem_source = gpu.max_mem_source(requested)
    paths = {
        "runtime_flags": gpu.path_record(requested == "gpu", set=sorted(applied["set"]),
                                         exercised_by=gpu.CPU_TESTS["runtime_flags"]),
        "auto_cast": gpu.path_record(effective != "fp32", entered=amp.entered, level=amp.level, dtype=amp.dtype,
                                     exercised_by=gpu.CPU_TESTS["auto_cast"]),
        "sync_batchnorm": gpu.path_record(False, exercised_by=gpu.CPU_TESTS["sync_batchnorm"]),
        "max_mem_source": gpu.path_record(requested == "gpu", source=mem_source,
                                          exercised_by=gpu.CPU_TESTS["max_mem_source"]),
    }

    seed = int(glob.get("seed", 31))
    return Runtime(
        device=requested, rank=rank, world_size=world_size,
        nnodes=_env_int("PADDLE_NNODES", default=1),
        threads=_env_int("OMP_NUM_THREADS", default=1), seed=seed,
        precision_requested=amp.requested, precision_effective=effective, precision_note=note,
        sync_batchnorm=sync, max_mem_source=mem_source, deterministic=deterministic,
        flags=applied, gpu_paths=paths, amp=amp, rendezvous=rendezvous,
    )


def seed_everything(seed: int) -> None:
    """paddle / numpy / random, as PASSL does with seed + rank."""
    paddle.seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def peak_memory_gb(device: str, cuda: Any = None) -> Optional[float]:
    """Peak allocated memory in GB (1024^3): device memory on GPU (`cuda`: paddle.device.cuda, or a
    stand-in with its max_memory_allocated()), paddle's host allocator on CPU."""
    if device == "gpu":
        return (cuda or paddle.device.cuda).max_memory_allocated() / 1024**3
    core = getattr(getattr(paddle, "base", None), "core", None) or paddle.fluid.core  # paddle 2.6: fluid
    return core.host_memory_stat_peak_value("Allocated", 0) / 1024**3
