"""The trainer's GPU-only branches, each written so a CPU test can run it with stand-ins.

On a GPU a PASSL config runs as PASSL's engine runs it (PaddlePaddle/PASSL 5c7359b, passl/engine/engine.py):
- paddle FLAGS: PASSL's defaults, updated by `Global.flags` (`runtime_flags`);
- mixed precision: `paddle.amp.auto_cast` at `FP16.level` O1 (`AmpPlan`), with PASSL's loss scaler
  (swavbench.train.optim.DynamicLossScaler);
- SyncBatchNorm over all ranks (`convert_sync_batchnorm`);
- `max mem` from paddle.device.cuda.max_memory_allocated (swavbench.train.runtime.peak_memory_gb).
What ran is recorded in the run header (`gpu_paths`): for each branch, whether it really ran in this run
and which CPU test exercises it here (CPU_TESTS), so a CPU-only project can show the GPU path is covered.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, ContextManager, Mapping, Optional

import paddle

from swavbench.errors import ConfigError

# passl/engine/engine.py: RELATED_FLAGS_SETTING, set before Global.flags (which updates it) on every run
PASSL_FLAGS: dict[str, Any] = {
    "FLAGS_cudnn_exhaustive_search": 1,
    "FLAGS_cudnn_batchnorm_spatial_persistent": 1,
    "FLAGS_max_inplace_grad_add": 8,
}
CUDA_ONLY_FLAGS = ("FLAGS_cudnn_", "FLAGS_conv_workspace_size_limit", "FLAGS_embedding_deterministic")

# Where each GPU-only branch is exercised on CPU (stand-ins where paddle has no CPU kernel).
CPU_TESTS = {
    "runtime_flags": "tests/test_gpu_paths.py::test_gpu_runtime_flags_are_passl_engine_defaults_updated_by_the_config",
    "loss_scaler": "tests/test_gpu_paths.py::test_scaler_skips_backs_off_and_grows_under_injected_inf_grads",
    "auto_cast": "tests/test_gpu_paths.py::test_o1_auto_cast_and_scaler_run_through_the_real_training_step",
    "sync_batchnorm": "tests/test_gpu_paths.py::test_sync_batchnorm_conversion_of_the_real_models",
    "max_mem_source": "tests/test_gpu_paths.py::test_max_mem_reads_the_device_module",
}


def path_record(ran: bool, **detail: Any) -> dict:
    """One `gpu_paths` entry of the run header: did it really run here, and where a CPU test exercises it."""
    return {"ran": bool(ran), **detail}


# ---------------------------------------------------------------------------------------------------------
# paddle FLAGS
# ---------------------------------------------------------------------------------------------------------
def runtime_flags(glob: Mapping, device: str) -> dict[str, Any]:
    """The FLAGS a run sets: on gpu PASSL's defaults updated by `Global.flags` (PASSL CI's
    `-o Global.flags.FLAGS_cudnn_exhaustive_search=0` keeps the two others), plus FLAGS_cudnn_deterministic
    for `Global.deterministic`; on cpu `Global.flags` only (PASSL's defaults tune cuDNN and grad adds on GPU)."""
    given = glob.get("flags") or {}
    if not isinstance(given, Mapping) or not all(isinstance(k, str) and k.startswith("FLAGS_") for k in given):
        raise ConfigError(f"Global.flags: expected a mapping of FLAGS_* names to values, got {given!r}")
    flags = dict(PASSL_FLAGS) if device == "gpu" else {}
    if device == "gpu" and glob.get("deterministic"):
        flags["FLAGS_cudnn_deterministic"] = True
    flags.update(given)
    return flags


def apply_flags(flags: Mapping[str, Any], device: str,
                set_flags: Callable[[dict], None] = paddle.set_flags) -> dict:
    """Set `flags`; on cpu the cuDNN-only ones are skipped (paddle's CPU build refuses them). Returns
    {"set": {...}, "skipped": {...}} for the run header; ConfigError for a flag paddle does not know."""
    done, skipped = {}, {}
    for name, value in flags.items():
        if device != "gpu" and name.startswith(CUDA_ONLY_FLAGS):
            skipped[name] = value
            continue
        try:
            set_flags({name: value})
        except (ValueError, TypeError) as err:
            raise ConfigError(f"Global.flags.{name}={value!r}: paddle refused it ({err})") from None
        done[name] = value
    return {"set": done, "skipped_on_cpu": skipped}


def flags_deterministic(flags: Mapping[str, Any]) -> bool:
    """True when the flags ask cuDNN for deterministic kernels (PASSL CI: FLAGS_cudnn_deterministic=1)."""
    return bool(flags.get("FLAGS_cudnn_deterministic", False))


# ---------------------------------------------------------------------------------------------------------
# Mixed precision
# ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AmpPlan:
    """How a run uses `FP16`: whether auto_cast is entered each step, at which level / dtype, and why."""

    requested: str  # "fp16 O1" | "bf16 O1" | "fp32"
    entered: bool  # auto_cast is entered around the forward pass (the loss scaler is on then, as PASSL's)
    level: str
    dtype: str
    reason: str

    def autocast(self) -> Callable[[], ContextManager]:
        """A factory of the per-step context: paddle.amp.auto_cast when entered, else a no-op."""
        if not self.entered:
            return contextlib.nullcontext
        return lambda: paddle.amp.auto_cast(enable=True, level=self.level, dtype=self.dtype)


def amp_plan(config: Mapping, device: str) -> AmpPlan:
    """PASSL: an `FP16` section turns AMP on unless its level is O0 (its default level is O2).

    gpu: auto_cast at the level (O1 only; O2's pure-fp16 model is not implemented) with FP16.dtype
    (float16, PASSL's). cpu: float16 is not entered (paddle has no fp16 AMP on cpu; the run is fp32);
    FP16.dtype=bfloat16 is entered on cpu too, so the O1 code path runs here (paddle may still ignore it:
    see `amp_takes_effect`).
    """
    section = config.get("FP16")
    level = str((section or {}).get("level", "O2" if section is not None else "O0")).upper()
    if level not in ("O0", "O1", "O2"):
        raise ConfigError(f"FP16.level: {level!r} is not O0, O1 or O2")
    if level == "O0":
        return AmpPlan("fp32", False, level, "float32", "fp32")
    if level == "O2":
        raise ConfigError("FP16.level: O2 (a pure fp16 model) is not implemented; use O1 (PASSL's SwAV configs)")
    dtype = str((section or {}).get("dtype", "float16"))
    requested = f"{'bf16' if dtype == 'bfloat16' else 'fp16'} {level}"
    if device == "gpu" or dtype == "bfloat16":
        return AmpPlan(requested, True, level, dtype, f"auto_cast({level}, {dtype}) entered every step")
    return AmpPlan(requested, False, level, dtype, "paddle has no fp16 AMP on cpu")


def amp_takes_effect(amp: AmpPlan) -> bool:
    """Probe: does a matmul inside this plan's auto_cast come out in the low-precision dtype here?"""
    if not amp.entered:
        return False
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # paddle warns that amp_guard does nothing on a CPU place
        with amp.autocast()():
            out = paddle.matmul(paddle.ones([2, 2]), paddle.ones([2, 2]))
    return out.dtype != paddle.float32


# ---------------------------------------------------------------------------------------------------------
# SyncBatchNorm and the max mem source
# ---------------------------------------------------------------------------------------------------------
def sync_batchnorm_mode(wanted: bool, device: str, world_size: int) -> str:
    """What the run's BatchNorm is (recorded as `sync_batchnorm`): SyncBatchNorm over every rank on several
    GPUs (PASSL: global SyncBN, `apex: False`), per-rank BN on cpu (paddle has no SyncBN kernel there)."""
    if wanted and world_size > 1 and device == "gpu":
        return "SyncBatchNorm"
    if wanted and world_size > 1:
        return "BatchNorm per rank (SyncBatchNorm requested; paddle has no SyncBatchNorm kernel on cpu)"
    return "BatchNorm"


def max_mem_source(device: str) -> str:
    """Where the log line's `max mem` comes from (swavbench.train.runtime.peak_memory_gb reads it)."""
    if device == "gpu":
        return "paddle.device.cuda.max_memory_allocated (peak allocated device memory)"
    return 'paddle.base.core.host_memory_stat_peak_value("Allocated", 0) (peak allocated host memory)'


def count_batchnorms(model: paddle.nn.Layer, kind: Optional[type] = None) -> int:
    """BatchNorm layers of `model` (of `kind`, default every _BatchNormBase)."""
    kind = kind or paddle.nn.layer.norm._BatchNormBase
    return sum(isinstance(layer, kind) for layer in model.sublayers(include_self=True))


def convert_sync_batchnorm(model: paddle.nn.Layer) -> tuple[paddle.nn.Layer, int]:
    """Every BatchNorm of `model` as a SyncBatchNorm sharing its parameters and statistics (PASSL: global
    SyncBN on more than one rank), and how many were converted. Parameter names and state_dict keys stay."""
    converted = paddle.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return converted, count_batchnorms(converted, paddle.nn.SyncBatchNorm)
