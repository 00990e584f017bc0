"""Case specs (one per PASSL CI job) and the device profiles (gpu / cpu) that scale them to a machine.

A `Case` is plain data: its PASSL config, topology, GPU overrides, step marker, warm-up lines and
tolerances, as PASSL's tests/CI/case.sh runs it (passl-contract.md section 4). `plan(case, profile, ...)`
turns it into a `Plan`: exactly what to launch here (config, profile, `-o` overrides, nodes x ranks),
which log line to judge and within which time limits. Ids: the short id and PASSL's long name both work.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from swavbench.errors import SwavbenchError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
DEVICE_PROFILES = ("cpu", "gpu")


@dataclass(frozen=True)
class Tolerances:
    ips_pct: float = 5.0  # |ips diff| must be strictly below this (both directions, as check_result)
    loss: str = "exact"  # string compare of the marker line's loss
    max_mem: str = "exact"

    def as_dict(self) -> dict:
        return {"ips_pct": self.ips_pct, "loss": self.loss, "max_mem": self.max_mem}


@dataclass(frozen=True)
class Scale:
    """How a profile runs a case: topology, steps, log period (the marker is step `max_train_step`)."""

    nnodes: int
    devices_per_node: int
    max_train_step: int
    print_batch_step: int
    note: str = ""  # why this differs from the case's real topology, shown in the result

    @property
    def world_size(self) -> int:
        return self.nnodes * self.devices_per_node


@dataclass(frozen=True)
class SynthData:
    """A deterministic synthetic dataset (`swavbench data synth`) for CPU runs."""

    classes: int = 10
    train_per_class: int = 300
    val_per_class: int = 10
    size: int = 40
    seed: int = 0

    @property
    def key(self) -> str:
        return f"synth-c{self.classes}-t{self.train_per_class}-v{self.val_per_class}-s{self.size}-r{self.seed}"

    def synth_args(self, out: Path) -> list[str]:
        return ["data", "synth", "--out", str(out), "--classes", str(self.classes), "--train-per-class",
                str(self.train_per_class), "--val-per-class", str(self.val_per_class), "--size",
                str(self.size), "--seed", str(self.seed)]


@dataclass(frozen=True)
class Case:
    id: str  # short id, used in pytest ids, baselines and every CLI command
    passl_name: str  # PASSL's CI case name (= its config name)
    config: str  # config in configs/
    task: str  # pt (pre-train) | lp (linear probe) | ft (fine-tune)
    gpu: Scale  # PASSL's own topology and step counts
    cpu: Scale  # this project's CPU form (gloo ranks)
    gpu_marker: str  # the line check_result reads on GPU, e.g. "200/2599"
    warmup_lines: int = 1  # first logged lines left out of the ips mean (PASSL: iteration 0)
    tolerances: Tolerances = field(default_factory=Tolerances)
    metric: str = "loss"
    deterministic: bool = True  # Global.deterministic (GPU: FLAGS_cudnn_deterministic)
    needs_pretrained: bool = False
    extra_overrides: tuple[str, ...] = ()
    note: str = ""

    @property
    def multinode(self) -> bool:
        return self.gpu.nnodes > 1


_PT_NOTE = "PASSL's pt root includes val/, so iters/epoch count train+val images"
CASES: tuple[Case, ...] = (
    Case("swav_pt_1n8c_fp16o1", "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1",
         "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1", "pt",
         gpu=Scale(1, 8, 201, 20), cpu=Scale(1, 8, 21, 5), gpu_marker="200/2599", note=_PT_NOTE),
    Case("swav_lp_1n8c_fp32", "swav_resnet50_224_lp_in1k_1n8c_dp_fp32",
         "swav_resnet50_224_lp_in1k_1n8c_dp_fp32", "lp",
         gpu=Scale(1, 8, 201, 20), cpu=Scale(1, 8, 21, 5), gpu_marker="200/5005", needs_pretrained=True),
    Case("swav_ft_1n4c_fp32", "swav_resnet50_224_ft_in1k_1n4c_dp_fp32",
         "swav_resnet50_224_ft_in1k_1n4c_dp_fp32", "ft",
         gpu=Scale(1, 4, 121, 20), cpu=Scale(1, 4, 21, 5), gpu_marker="120/126", needs_pretrained=True,
         note="PASSL CI reads 120/126 every 20 steps, so print_batch_step=20 (the config says 50)"),
    Case("swav_pt_4n32c_fp16o1", "swav_resnet50_224_pt_in1k_4n32c_dp_fp16o1",
         "swav_resnet50_224_pt_in1k_4n32c_dp_fp16o1", "pt",
         gpu=Scale(4, 8, 201, 20),
         cpu=Scale(4, 2, 11, 5, note="CPU: 4 launchers x 2 gloo ranks (not x 8) on 127.0.0.1 to fit 2 cores"),
         gpu_marker="200/324",
         note="no PASSL CI job reads this config; marker derived: 1331167 images // (128 x 32) = 324 iters"),
)
CPU_DATA = SynthData()


def resolve_case(name: str) -> Case:
    """A case by short id or PASSL long name; an unknown name is a one-line usage error listing all."""
    for case in CASES:
        if name in (case.id, case.passl_name, case.config):
            return case
    known = ", ".join(c.id for c in CASES)
    raise SwavbenchError(f"unknown case {name!r}; known cases: {known} (or their PASSL long names)")


def case_ids() -> list[str]:
    return [c.id for c in CASES]


@dataclass(frozen=True)
class Plan:
    """One case scaled to one device profile: what to launch and what to judge."""

    case: Case
    device_profile: str  # cpu | gpu
    config: str
    train_profile: Optional[str]  # `--profile` passed to `swavbench train` (cpu) or None
    overrides: tuple[str, ...]
    scale: Scale
    marker: str
    marker_step: int  # global 1-based step of the marker line
    warmup_lines: int
    tolerances: Tolerances
    threads: int  # OMP_NUM_THREADS per rank
    timeout_s: float  # the whole run
    stall_s: float  # no new bytes in any worker log / steps file for this long = hang
    skip_reason: Optional[str] = None
    notes: tuple[str, ...] = ()

    @property
    def world_size(self) -> int:
        return self.scale.world_size

    def train_args(self) -> list[str]:
        """Arguments after the worker command: `-c CONFIG [--profile cpu] -o K=V ...`."""
        args = ["-c", self.config]
        if self.train_profile:
            args += ["--profile", self.train_profile]
        for item in self.overrides:
            args += ["-o", item]
        return args


def count_images(root: Path) -> int:
    """Images under `root`, recursively (PASSL's dataset folder scan counts every class folder)."""
    total = 0
    for _dirpath, _dirs, files in os.walk(root):
        total += sum(1 for f in files if f.lower().endswith(IMAGE_EXTS))
    return total


def cpu_batch_size() -> int:
    """Per-rank batch of the CPU profile (configs/profiles/cpu.yaml)."""
    from swavbench.config import profile_overrides

    for keys, value in profile_overrides("cpu", "ContrastiveLearning"):
        if keys == ["DataLoader", "Train", "sampler", "batch_size"]:
            return int(value)
    raise SwavbenchError("configs/profiles/cpu.yaml: no DataLoader.Train.sampler.batch_size")


def marker_for(step: int, iters_per_epoch: int) -> str:
    """The `iter/iters` text of global step `step` (1-based)."""
    return f"{(step - 1) % iters_per_epoch}/{iters_per_epoch}"


def skip_reason(case: Case) -> Optional[str]:
    """Why this case cannot run on this build, or None. Never pass vacuously: say why."""
    if not case.needs_pretrained:
        return None
    import swavbench.train as train

    caps = set(getattr(train, "CAPABILITIES", ()))
    if "classification" not in caps:
        return (f"{case.id} needs a pre-trained SwAV checkpoint and the Classification trainer (issue 4); "
                "swavbench.train does not declare 'classification' in CAPABILITIES yet")
    return (f"{case.id} needs a pre-trained SwAV checkpoint: none is produced or shipped yet (issue 4)")


def plan(case: Case, device_profile: str, data_root: Optional[Path] = None, threads: int = 1,
         timeout_s: Optional[float] = None, stall_s: Optional[float] = None) -> Plan:
    """Scale `case` to `device_profile`. On CPU `data_root` (the synthetic set) fixes the marker exactly."""
    if device_profile not in DEVICE_PROFILES:
        raise SwavbenchError(f"unknown device profile {device_profile!r}; use one of {', '.join(DEVICE_PROFILES)}")
    scale = case.cpu if device_profile == "cpu" else case.gpu
    overrides = [f"Global.print_batch_step={scale.print_batch_step}",
                 f"Global.max_train_step={scale.max_train_step}",
                 f"Global.deterministic={case.deterministic}", *case.extra_overrides]
    notes = [n for n in (case.note, scale.note) if n]
    reason = skip_reason(case)
    if device_profile == "gpu":
        marker = case.gpu_marker
    elif data_root is None or reason:
        marker = "?"
    else:
        overrides.append(f"DataLoader.Train.dataset.root={data_root}")
        n = count_images(data_root)
        iters = n // (cpu_batch_size() * scale.world_size)
        if iters < scale.max_train_step:
            raise SwavbenchError(
                f"{data_root}: {n} images give {iters} iters/epoch at batch {cpu_batch_size()} x "
                f"{scale.world_size} ranks; {case.id} needs >= {scale.max_train_step} (a bigger dataset)")
        marker = marker_for(scale.max_train_step, iters)
    default_timeout = 900.0 if device_profile == "gpu" else 300.0 + 20.0 * scale.world_size
    return Plan(case=case, device_profile=device_profile, config=case.config,
                train_profile="cpu" if device_profile == "cpu" else None, overrides=tuple(overrides),
                scale=scale, marker=marker, marker_step=scale.max_train_step,
                warmup_lines=case.warmup_lines, tolerances=case.tolerances, threads=threads,
                timeout_s=timeout_s or default_timeout, stall_s=stall_s or 120.0, skip_reason=reason,
                notes=tuple(notes))


def with_overrides(p: Plan, *extra: str) -> Plan:
    """The same plan with more `-o` overrides (last one wins), e.g. a changed learning rate."""
    return replace(p, overrides=p.overrides + tuple(extra))
