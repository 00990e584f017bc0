"""What a plan needs on disk: the synthetic CPU dataset, the cached CPU pre-train, image and subset counts.

`plan_for(name, device_profile, data_root, overrides)` is the one entry point the CLI and the pytest plugin
call: it resolves the case, picks the device profile, makes the CPU dataset (once, cached), gathers the
`PlanInputs` (counts, the config's batch size, the pre-trained weights) and hands them to the pure
`swavbench.harness.cases.plan`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Optional, Sequence

from swavbench.errors import DataError
from swavbench.harness.cases import (
    CPU_DATA,
    Case,
    Plan,
    PlanInputs,
    SynthData,
    plan,
    resolve_case,
    skip_reason,
    with_overrides,
)

IMAGE_EXTS = (".jpeg", ".jpg", ".png")  # swavbench.train.data.IMAGE_SUFFIXES
# The pre-train an lp / ft case starts from on CPU: made once per dataset and code version, cached.
PRETRAIN_CONFIG = "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1"


def count_images(root: Path) -> int:
    """Training images of a pre-training root: `<root>/train/<class>/*` (as swavbench.train.data scans it)."""
    folder = Path(root) / "train"
    if not folder.is_dir():
        return 0
    return sum(
        1
        for cls in os.scandir(folder)
        if cls.is_dir()
        for f in os.scandir(cls.path)
        if f.name.lower().endswith(IMAGE_EXTS)
    )


def count_classes(root: Path) -> int:
    """Class folders of `<root>/train` (their sorted names are the labels)."""
    return sum(1 for d in os.scandir(Path(root) / "train") if d.is_dir())


def count_subset(path: Path) -> int:
    """Non-empty lines of a SimCLR subset file (one image name a line); 0 when the file is missing."""
    return sum(1 for line in path.read_text().splitlines() if line.strip()) if path.is_file() else 0


def batch_size(case: Case, train_profile: Optional[str]) -> int:
    """Per-rank batch of the case's config under the training profile (cpu.yaml sets 8)."""
    from swavbench.train.config import get, load_config

    return int(get(load_config(case.config, profile=train_profile), "DataLoader.Train.sampler.batch_size", 64))


def subset_file_name(case: Case) -> str:
    """The fine-tune's subset file (the config's txt_file_name), read beside train/ and val/."""
    from swavbench.train.config import get, load_config

    return get(load_config(case.config), "DataLoader.Train.dataset.txt_file_name", "10percent.txt")


def cache_dir() -> Path:
    """Where generated CPU datasets live: $SWAVBENCH_CACHE_DIR, else <repo>/data/cache (git-ignored)."""
    from swavbench.paths import REPO_ROOT

    return Path(os.environ.get("SWAVBENCH_CACHE_DIR") or REPO_ROOT / "data" / "cache")


def ensure_dataset(spec: SynthData = CPU_DATA, root: Optional[Path] = None) -> Path:
    """The synthetic dataset of `spec`, generated once (deterministic) into the cache and reused after.

    Generated into a temporary sibling folder and renamed into place, so a concurrent or interrupted
    generation never leaves a half dataset behind.
    """
    target = (root or cache_dir()) / spec.key
    params = {
        "classes": spec.classes,
        "train_per_class": spec.train_per_class,
        "val_per_class": spec.val_per_class,
        "size": spec.size,
        "seed": spec.seed,
    }
    marker = target / "synth.json"
    from swavbench.train.synth import STYLE_VERSION, synthesize

    if marker.is_file() and json.loads(marker.read_text()) == {**params, "style_version": STYLE_VERSION}:
        return target

    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    synthesize(tmp, **params)
    try:
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not marker.is_file():
            raise
    return target


# $SWAVBENCH_PRETRAINED=<checkpoint prefix> gives lp / ft cases their pre-trained weights explicitly (on a GPU
# cluster: the real SwAV checkpoint; otherwise the config's Global.pretrained_model is used there). On CPU,
# without it, the cached short pre-train below is built and used.


def cpu_pretrained(data_root: Path) -> str:
    """The cached short CPU pre-train on `data_root` (built on first use, never downloaded)."""
    from swavbench.harness.pretrain_cache import pretrained_checkpoint, short_pretrain_overrides

    overrides = short_pretrain_overrides(count_images(Path(data_root)))
    return str(pretrained_checkpoint(PRETRAIN_CONFIG, "cpu", data_root, overrides, cache_dir() / "pretrained"))


def plan_inputs(case: Case, device_profile: str, data_root: Path) -> PlanInputs:
    """Count what `case` will read under `data_root` (DataError when `<root>/train` is missing)."""
    root = Path(data_root)
    if not (root / "train").is_dir():
        raise DataError(
            f"missing dataset: {root}/train not found (expected <root>/train/<class>/*.jpg); "
            "pass the right --data-root, or omit it on cpu to use the cached synthetic set"
        )
    train_profile = "cpu" if device_profile == "cpu" else None
    subset, subset_images, pretrained = None, 0, None
    if case.task == "ft":
        subset = subset_file_name(case)
        subset_images = count_subset(root / subset)
    if case.needs_pretrained:
        pretrained = os.environ.get("SWAVBENCH_PRETRAINED") or (
            cpu_pretrained(root) if device_profile == "cpu" else None
        )
    return PlanInputs(
        root=root,
        train_images=count_images(root),
        classes=count_classes(root),
        batch_size=batch_size(case, train_profile),
        subset_file=subset,
        subset_images=subset_images,
        pretrained=pretrained,
    )


def default_device_profile() -> str:
    """gpu when paddle sees a CUDA device, else cpu."""
    from swavbench.harness.baselines import detect_gpu

    return "gpu" if detect_gpu() else "cpu"


def plan_for(
    name: str,
    device_profile: Optional[str] = None,
    data_root: Optional[Path] = None,
    overrides: Sequence[str] = (),
    **limits: Optional[float],
) -> Plan:
    """Resolve a case name, pick the device profile, make the CPU dataset if needed, and plan it."""
    case = resolve_case(name)
    device_profile = device_profile or default_device_profile()
    if device_profile == "cpu" and data_root is None and skip_reason(case) is None:
        data_root = ensure_dataset(case.cpu_data)
    inputs = plan_inputs(case, device_profile, Path(data_root)) if data_root and not skip_reason(case) else None
    p = plan(case, device_profile, inputs, timeout_s=limits.get("timeout_s"), stall_s=limits.get("stall_s"))
    return with_overrides(p, *overrides) if overrides else p
