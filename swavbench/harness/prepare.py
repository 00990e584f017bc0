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
from typing import Mapping, Optional, Sequence

from swavbench.errors import CheckpointError, DataError, SwavbenchError
from swavbench.harness.cases import (
    CPU_DATA,
    PASSL_PRETRAINED,
    Case,
    Cluster,
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


def config_facts(case: Case, train_profile: Optional[str], overrides: Sequence[str] = ()) -> dict:
    """What the case's config says about its data under the training profile and the user's `-o` overrides:
    the per-rank batch, drop_last, the class count, its own data root and (fine-tune) its subset file."""
    from swavbench.train.config import class_count, get, load_config, subset_path

    config = load_config(case.config, overrides, profile=train_profile)
    train = get(config, "DataLoader.Train.dataset", {}) or {}
    root = get(config, "DataLoader.Train.dataset.root")
    return {
        "batch_size": int(get(config, "DataLoader.Train.sampler.batch_size", 64)),
        "drop_last": bool(get(config, "DataLoader.Train.sampler.drop_last", not case.needs_pretrained)),
        "classes": class_count(config, case.task == "ft")[1] if case.needs_pretrained else None,
        # lp / ft configs name the split folder (PASSL's ImageFolder root): the dataset root is above it
        "root": (Path(root).parent if case.needs_pretrained else Path(root)) if root else None,
        "subset": subset_path(train) if case.task == "ft" else None,
    }


def cache_dir() -> Path:
    """Where generated CPU datasets live: $SWAVBENCH_CACHE_DIR, else <project home>/data/cache."""
    from swavbench.paths import cache_dir as home_cache

    return home_cache()


def ensure_dataset(spec: SynthData = CPU_DATA, root: Optional[Path] = None) -> Path:
    """The synthetic dataset of `spec`, generated once (deterministic) into the cache and reused after.

    Generated into a temporary sibling folder and renamed into place, so a concurrent or interrupted
    generation never leaves a half dataset behind; a lock file beside it makes concurrent callers (pytest-xdist
    workers, two sessions) wait for one build and reuse it instead of racing.
    """
    import fcntl

    target = (root or cache_dir()) / spec.key
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _ensure_dataset_locked(spec, target)


def _ensure_dataset_locked(spec: SynthData, target: Path) -> Path:
    """ensure_dataset's check-then-build, under its lock."""
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


def pretrained_exists(prefix: str) -> bool:
    """A checkpoint prefix as swavbench.train.pretrained resolves it: PREFIX.pdparams, PREFIX.npz or PREFIX."""
    return any(Path(p).is_file() for p in (f"{prefix}.pdparams", f"{prefix}.npz", prefix))


def _resolve_root(case: Case, device_profile: str, data_root: Optional[Path], facts: dict) -> tuple[Path, str]:
    """(dataset root, where it came from): --data-root as given; on gpu without it, the config's own root
    when it exists here, else a DataError saying what to pass."""
    if data_root is not None:
        root = Path(data_root)
        if not (root / "train").is_dir():
            raise DataError(
                f"missing dataset: {root}/train not found (expected <root>/train/<class>/*.jpg); "
                "pass the right --data-root, or omit it on cpu to use the cached synthetic set"
            )
        return root, "given"
    root = facts["root"]
    if root is not None and (root / "train").is_dir():
        return root, "config"
    key = "DataLoader.Train.dataset.root"
    raise DataError(
        f"{case.id}: no dataset here: the config's {key} ({facts['root'] or 'unset'}) has no train/ folder "
        f"under {Path.cwd()}; pass --data-root DIR (DIR/train/<class>/*.JPEG, DIR/val"
        + (", DIR/10percent.txt" if case.task == "ft" else "") + ") or run from the folder that holds it"
    )


def plan_inputs(
    case: Case, device_profile: str, data_root: Optional[Path], overrides: Sequence[str] = ()
) -> PlanInputs:
    """Count what `case` will read: `data_root` (cpu: the synthetic set) or, on gpu, the config's own root;
    the config is read with the user's `overrides` (a changed batch or subset file changes the marker).

    DataError when the dataset or the fine-tune's subset file is missing; CheckpointError when an lp / ft
    case's pre-trained weights are missing on gpu (PASSL would train from random weights).
    """
    train_profile = "cpu" if device_profile == "cpu" else None
    facts = config_facts(case, train_profile, overrides)
    root, source = _resolve_root(case, device_profile, data_root, facts)
    subset, subset_images, pretrained = None, 0, None
    if case.task == "ft":
        subset = facts["subset"]
        if source == "given" and subset is not None and not subset.is_absolute():
            subset = root / subset.name  # the subset file of the dataset given, beside its train/ and val/
        if subset is None or not subset.is_file():
            raise DataError(f"{case.id}: subset file {subset} not found (SimCLR format: one image name a line, "
                            f"beside train/ and val/); the config's txt_file_name names it")
        subset_images = count_subset(subset)
    if case.needs_pretrained:
        pretrained = os.environ.get("SWAVBENCH_PRETRAINED") or (
            cpu_pretrained(root) if device_profile == "cpu" else None
        )
        prefix = pretrained or PASSL_PRETRAINED
        if device_profile == "gpu" and not pretrained_exists(prefix):
            raise CheckpointError(
                f"{case.id}: pre-trained weights {prefix}.pdparams not found under {Path.cwd()}: put PASSL's "
                "SwAV checkpoint there or set SWAVBENCH_PRETRAINED=<checkpoint prefix>"
            )
    return PlanInputs(
        root=root,
        train_images=count_images(root),
        classes=count_classes(root),
        batch_size=facts["batch_size"],
        drop_last=facts["drop_last"],
        subset_file=subset,
        subset_images=subset_images,
        pretrained=pretrained,
        config_classes=facts["classes"],
        root_source=source,
    )


def cluster_from_env(environ: Mapping[str, str]) -> Optional[Cluster]:
    """PASSL's cluster variables as launch reads them (swavbench.harness.launch.cluster_from_env), or None."""
    from swavbench.harness.launch import cluster_from_env as launch_fields

    fields = launch_fields(environ)
    if not fields:
        return None
    devices = fields.get("devices")
    return Cluster(int(fields.get("nnodes", 1)), fields.get("master"),
                   tuple(d for d in devices.split(",") if d.strip()) if devices else None)


def default_device_profile() -> str:
    """gpu when paddle sees a CUDA device, else cpu; never cpu by itself where an NVIDIA GPU is visible
    (EnvironmentProblem, exit 6: see swavbench.machine.auto_device)."""
    from swavbench.machine import auto_device

    return auto_device()


def plan_for(
    name: str,
    device_profile: Optional[str] = None,
    data_root: Optional[Path] = None,
    overrides: Sequence[str] = (),
    environ: Optional[Mapping[str, str]] = None,
    launch: bool = True,
    **limits: Optional[float],
) -> Plan:
    """Resolve a case name, pick the device profile, make the CPU dataset if needed, read what the run will
    read, and plan it. On gpu PASSL's cluster variables (`environ`, default os.environ) set the topology.
    `launch=False` plans for reading finished logs only: no dataset, checkpoint or cluster is looked for
    on gpu (the marker then comes from the logs' run header)."""
    case = resolve_case(name)
    device_profile = device_profile or default_device_profile()
    cluster = cluster_from_env(os.environ if environ is None else environ) if device_profile == "gpu" else None
    if device_profile == "gpu" and not launch and data_root is None:
        return plan(case, device_profile, None, timeout_s=limits.get("timeout_s"), stall_s=limits.get("stall_s"),
                    cluster=cluster)
    if device_profile == "gpu" and case.multinode and (cluster is None or cluster.nnodes < 2):
        raise SwavbenchError(
            f"{case.id} runs on {case.gpu.nnodes} nodes x {case.gpu.devices_per_node} GPUs: on every node set "
            f"PADDLE_NNODES={case.gpu.nnodes}, PADDLE_MASTER=<node 0 ip:port> and CUDA_VISIBLE_DEVICES=0,...,"
            f"{case.gpu.devices_per_node - 1} (PASSL's cluster form), then run the same command there"
        )
    inputs = None
    if skip_reason(case) is None:
        if device_profile == "cpu" and data_root is None:
            data_root = ensure_dataset(case.cpu_data)
        inputs = plan_inputs(case, device_profile, Path(data_root) if data_root else None, overrides)
    p = plan(case, device_profile, inputs, timeout_s=limits.get("timeout_s"), stall_s=limits.get("stall_s"),
             cluster=cluster)
    return with_overrides(p, *overrides) if overrides else p
