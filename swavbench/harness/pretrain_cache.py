"""A short CPU pre-train, made once and cached: the checkpoint the lp / ft cases start from (never downloaded).

`pretrained_checkpoint(...)` returns a checkpoint prefix (PASSL convention, no extension) for
`-o Global.pretrained_model=<prefix>`. The cache key hashes everything that decides the weights: the config
file, the profile file, the overrides, the dataset (file names and sizes under `<root>/train`, and the
synth parameters), the training code (`swavbench/train/*.py`, `swavbench/train/config.py`) and paddle's version.
A build runs `swavbench train` in a subprocess into a temporary folder inside `cache_dir`, then renames it
into place (atomic); concurrent callers wait on a lock file and reuse the result.

    <cache_dir>/<config stem>-<key>/latest.{pdparams,pdopt,pdstates}, cache.json, train.log
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from swavbench.errors import RunFailed

PACKAGE = Path(__file__).resolve().parent.parent
# The short CPU pre-train recipe (issue 4; measured on the synthetic set, see tests/test_classify.py and
# docs/design.md "Short CPU pre-train"). What a few hundred CPU steps need, on top of the CPU profile:
# - ~700 steps at batch 32: fewer barely move the weights (LARC's per-step change is lr x 0.001 of |w|);
#   lr 2.4 (the reference's 4.8 at batch 4096 is per-layer-normalised by LARC, so it does not scale down);
# - the 2 global crops only: the 16 px local crops halved the steps per second and the probe (0.63 vs 0.75);
# - prototypes frozen for the first 100 steps, and a standard (not zero-init-residual) trunk: a zero-init
#   residual trunk is still nearly residual-free after a short run, so its features stay shallow;
# Earlier recipes (100 prototypes at batch 8, or 30 prototypes in a 32-d head) collapsed to uniform codes
# (loss = ln K) or never got below ln K, and probed below a random trunk.
SHORT_PRETRAIN_OVERRIDES: tuple[str, ...] = (
    "DataLoader.Train.sampler.batch_size=32",
    "Model.backbone.zero_init_residual=False",
    "Model.freeze_prototypes_niters=100",
    "Model.nmb_crops=[2]",
    "DataLoader.Train.dataset.num_crops=[2]",
    "DataLoader.Train.dataset.size_crops=[32]",
    "DataLoader.Train.dataset.min_scale_crops=[0.14]",
    "DataLoader.Train.dataset.max_scale_crops=[1.0]",
    "Optimizer.LRScheduler.learning_rate=2.4",
    "Optimizer.LRScheduler.eta_min=0.0024",
)
SHORT_PRETRAIN_STEPS = 720  # the epochs are chosen per dataset to give about this many steps


def short_pretrain_overrides(train_images: int) -> list[str]:
    """SHORT_PRETRAIN_OVERRIDES plus `Global.epochs` for ~SHORT_PRETRAIN_STEPS steps on `train_images`."""
    per_epoch = max(1, train_images // 32)  # batch 32, drop_last
    return [*SHORT_PRETRAIN_OVERRIDES, f"Global.epochs={max(1, round(SHORT_PRETRAIN_STEPS / per_epoch))}"]


def _hash_file(digest: Any, path: Path) -> None:
    digest.update(str(path.name).encode() + b"\0" + path.read_bytes() + b"\0")


def _hash_dataset(digest: Any, root: Path) -> None:
    train = root / "train"
    if not train.is_dir():
        raise RunFailed("pretrain_failed", f"pre-train cache: dataset folder {train} not found")
    for marker in ("synth.json",):
        if (root / marker).is_file():
            _hash_file(digest, root / marker)
    for folder, _, files in sorted(os.walk(train)):
        for name in sorted(files):
            path = Path(folder) / name
            digest.update(f"{path.relative_to(root)}:{path.stat().st_size}\n".encode())


def cache_key(config_name: str, profile: str, data_root: Path, overrides: Sequence[str]) -> str:
    """16 hex digits identifying the weights a pre-train with these inputs would produce."""
    import paddle

    from swavbench.resources import PROFILE_DIR
    from swavbench.train.config import resolve_config_path

    digest = hashlib.sha256()
    _hash_file(digest, resolve_config_path(config_name))
    profile_path = Path(profile) if profile.endswith((".yaml", ".yml")) else PROFILE_DIR / f"{profile}.yaml"
    _hash_file(digest, profile_path)
    digest.update(json.dumps(list(overrides)).encode())
    _hash_dataset(digest, Path(data_root))
    for path in sorted((PACKAGE / "train").glob("*.py")):
        _hash_file(digest, path)
    digest.update(paddle.__version__.encode())
    return digest.hexdigest()[:16]


def _train_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PADDLE_", "FLAGS_"))}
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _build(config_name: str, profile: str, data_root: Path, overrides: Sequence[str], build: Path,
           timeout_s: float) -> None:
    """Run the pre-train into `build/run`, then leave only the checkpoint files, cache.json, train.log."""
    from swavbench.train.checkpoint import checkpoint_dir
    from swavbench.train.config import load_config

    run_dir = build / "run"
    all_overrides = [f"DataLoader.Train.dataset.root={data_root}", f"Global.output_dir={run_dir}", *overrides]
    cmd = [sys.executable, "-m", "swavbench.cli", "train", "-c", config_name, "--profile", profile]
    for item in all_overrides:
        cmd += ["-o", item]
    log_path = build / "train.log"
    with open(log_path, "wb") as log:
        try:
            code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=_train_env(),
                                  timeout=timeout_s, start_new_session=True).returncode
        except subprocess.TimeoutExpired:
            code = None
    if code != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        what = "timed out" if code is None else f"exited {code}"
        raise RunFailed("pretrain_failed", f"the short CPU pre-train for the checkpoint cache {what}: {tail[0]}")
    source = checkpoint_dir(load_config(config_name, all_overrides, profile))
    for ext in (".pdparams", ".pdopt", ".pdstates"):
        shutil.move(str(source / f"latest{ext}"), build / f"latest{ext}")
    shutil.rmtree(run_dir)
    meta = {"config": config_name, "profile": profile, "data_root": str(data_root), "overrides": list(overrides),
            "command": cmd, "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    (build / "cache.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def pretrained_checkpoint(config_name: str, profile: str, data_root: Path, overrides: Sequence[str],
                          cache_dir: Path, timeout_s: float = 1800.0) -> Path:
    """The cached pre-train's checkpoint prefix (`<dir>/latest`), building it first when absent.

    `overrides` go to `swavbench train` after the profile (SHORT_PRETRAIN_OVERRIDES is a good start);
    a failed build raises RunFailed(kind="pretrain_failed") and leaves nothing in the cache.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    data_root = Path(data_root).resolve()
    key = cache_key(config_name, profile, data_root, overrides)
    final = cache_dir / f"{Path(config_name).stem}-{key}"
    if (final / "latest.pdparams").is_file():
        return final / "latest"
    with open(cache_dir / f".{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same key: wait for it
        if (final / "latest.pdparams").is_file():
            return final / "latest"
        build = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=cache_dir))
        try:
            _build(config_name, profile, data_root, overrides, build, timeout_s)
            if final.exists():  # an incomplete leftover (its checkpoint was deleted): replace it
                shutil.rmtree(final)
            os.rename(build, final)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    return final / "latest"
