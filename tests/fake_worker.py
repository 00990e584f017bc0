"""A stand-in for `swavbench train` under paddle.distributed.launch: fast, no paddle import, scriptable faults.

Called as `python tests/fake_worker.py train -c CONFIG [--profile P] [-o K=V ...]`. It reads the launch env
(PADDLE_GLOBAL_RANK, PADDLE_GLOBAL_SIZE, PADDLE_NNODES, PADDLE_LOG_DIR), prints PASSL-format lines on rank 0,
writes `steps.<rank>.jsonl` and (rank 0) `run_header.json`, and exits 0 at Global.max_train_step.
The loss is a pure function of the learning rate and the step, so reruns are identical.

Faults (env): FAKE_CRASH_RANK/FAKE_CRASH_STEP/FAKE_CRASH_MODE=raise|kill, FAKE_HANG_RANK/FAKE_HANG_STEP/
FAKE_HANG_MODE=sleep|sigstop, FAKE_NAN_STEP, FAKE_NO_MARKER=1, FAKE_SLOW=<factor>, FAKE_STEP_S=<sleep>,
FAKE_STARTUP_S=<sleep>, FAKE_SYNC_DIR=<dir> (ranks wait for each other every step, as a collective does;
"log": a folder in PADDLE_LOG_DIR),
FAKE_STRAY=1 (rank 0 starts a sleeping grandchild in its own session), FAKE_MEM=<GB text> or "none",
FAKE_CPU_STEP_S=<cpu seconds> (each step burns that much CPU time x FAKE_SLOW / FAKE_IPS_SCALE and records its measured
wall time as batch_cost, as the real trainer does: a paused process makes no progress),
FAKE_IPS_SCALE=<factor>, FAKE_WARMUP_STEPS=<n> (first n steps 4x slower), FAKE_OUTLIER_STEPS=<s,s,...> (those
steps 3x slower), FAKE_LOSS_BUMP=<delta> from FAKE_LOSS_BUMP_STEP (default 1) on FAKE_LOSS_BUMP_RANK (default
all). With FAKE_ONCE_FILE=<path>, FAKE_IPS_SCALE and FAKE_LOSS_BUMP apply to the first run only (the one that
creates `<path>.<rank>`), so a rerun is clean: a one-off slow run, a one-off nondeterminism.
A/B sides: FAKE_SIDE_JSON='{"<tree>": {"FAKE_SLOW": "2"}}' adds env settings to the ranks whose first
PYTHONPATH entry is <tree> (an A/B side's tree), so one side of an A/B can be slower or compute another loss.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from swavbench.harness.prepare import count_images  # noqa: E402
from swavbench.train.config import get, load_config  # noqa: E402


def env(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def parse_argv(argv: list[str]) -> tuple[str, str | None, list[str]]:
    if argv and argv[0] == "train":
        argv = argv[1:]
    config, profile, overrides = "", None, []
    it = iter(argv)
    for arg in it:
        if arg == "-c":
            config = next(it)
        elif arg == "--profile":
            profile = next(it)
        elif arg == "-o":
            overrides.append(next(it))
    return config, profile, overrides


def barrier(sync_dir: Path, rank: int, world: int, step: int, timeout: float = 60.0) -> None:
    """Wait until every rank announced `step` (a file per rank), like an all-reduce waits for peers."""
    mine = sync_dir / f"r{rank}"
    tmp = sync_dir / f".r{rank}.tmp"
    tmp.write_text(str(step))
    os.replace(tmp, mine)
    deadline = time.time() + timeout
    while True:
        done = 0
        for r in range(world):
            try:
                done += int((sync_dir / f"r{r}").read_text() or 0) >= step
            except (OSError, ValueError):
                pass
        if done == world:
            return
        if time.time() > deadline:
            raise RuntimeError(f"(gloo) Timed out waiting {timeout}s for peers at step {step}")
        time.sleep(0.005)


def side_settings() -> None:
    """Env settings of this A/B side: FAKE_SIDE_JSON's entry for the first PYTHONPATH folder, if any."""
    first = os.environ.get("PYTHONPATH", "").split(os.pathsep)[0]
    sides = json.loads(os.environ.get("FAKE_SIDE_JSON") or "{}")
    if first and first in sides:
        os.environ.update({k: str(v) for k, v in sides[first].items()})


def burn(cpu_s: float) -> float:
    """Spend `cpu_s` of this process's CPU time; return the wall time it took."""
    t0, c0 = time.perf_counter(), time.process_time()
    while time.process_time() - c0 < cpu_s:
        pass
    return time.perf_counter() - t0


def main() -> int:
    side_settings()
    config_path, profile, overrides = parse_argv(sys.argv[1:])
    cfg = load_config(config_path, overrides, profile)
    rank = int(env("PADDLE_GLOBAL_RANK", env("PADDLE_TRAINER_ID", "0")))
    world = int(env("PADDLE_GLOBAL_SIZE", env("PADDLE_TRAINERS_NUM", "1")))
    log_dir = Path(env("PADDLE_LOG_DIR", "log"))
    log_dir.mkdir(parents=True, exist_ok=True)
    time.sleep(float(env("FAKE_STARTUP_S", "0")))
    bs = int(get(cfg, "DataLoader.Train.sampler.batch_size", 8))
    root = Path(str(get(cfg, "DataLoader.Train.dataset.root", ".")))
    if get(cfg, "Global.task_type", "ContrastiveLearning") == "Classification":  # root is the split folder
        subset = get(cfg, "DataLoader.Train.dataset.txt_file_name", None)
        if subset and (root.parent / subset).is_file():
            n_images = len((root.parent / subset).read_text().split())
        else:
            n_images = count_images(root.parent) if root.is_dir() else 0
        iters = math.ceil(math.ceil(n_images / world) / bs) if n_images else int(env("FAKE_ITERS", "78"))
    else:
        n_images = count_images(root) if root.is_dir() else 0
        iters = n_images // (bs * world) if n_images else int(env("FAKE_ITERS", "78"))
    epochs = int(get(cfg, "Global.epochs", 1))
    max_step = int(get(cfg, "Global.max_train_step", iters * epochs))
    period = int(get(cfg, "Global.print_batch_step", 10))
    lr = float(get(cfg, "Optimizer.LRScheduler.learning_rate", get(cfg, "Optimizer.lr.learning_rate", 0.1)))
    slow = float(env("FAKE_SLOW", "1"))
    step_s = float(env("FAKE_STEP_S", "0.01")) * slow
    first_run = True
    if env("FAKE_ONCE_FILE"):
        try:
            with open(f"{env('FAKE_ONCE_FILE')}.{rank}", "x"):
                pass
        except FileExistsError:
            first_run = False
    ips_scale = float(env("FAKE_IPS_SCALE", "1")) if first_run else 1.0
    bumped = first_run and env("FAKE_LOSS_BUMP_RANK", str(rank)) == str(rank)
    bump = float(env("FAKE_LOSS_BUMP", "0")) if bumped else 0.0
    base_cost = 0.1 * slow / ips_scale
    outliers = {int(x) for x in env("FAKE_OUTLIER_STEPS").split(",") if x}
    warm = int(env("FAKE_WARMUP_STEPS", "0"))
    batch_cost = base_cost
    mem = env("FAKE_MEM", "0.05")
    sync = Path(env("FAKE_SYNC_DIR")) if env("FAKE_SYNC_DIR") else None
    if env("FAKE_SYNC_DIR") == "log":  # a folder of this job's own (e.g. each side of an A/B)
        sync = log_dir / "sync"
        sync.mkdir(exist_ok=True)
    out = sys.stdout

    def log(msg: str) -> None:
        if rank == 0:
            out.write(time.strftime("[%Y/%m/%d %H:%M:%S] passl INFO: ") + msg + "\n")
            out.flush()

    if rank == 0:
        header = {
            "paddle_version": "fake",
            "paddle_commit": "fakec0ffee",
            "cuda_version": None,
            "cudnn_version": None,
            "gpu_driver": None,
            "hostname": "fake-host",
            "home": os.environ.get("SWAVBENCH_HOME"),
            "device": "cpu",
            "world_size": world,
            "nnodes": int(env("PADDLE_NNODES", "1")),
            "precision_requested": "fp16 O1",
            "precision_effective": "fp32",
            "precision_note": "fake worker",
            "threads": 1,
            "seed": 31,
            "max_mem_source": "fake",
            "config": config_path,
            "overrides": overrides,
            "batch_size_per_device": bs,
            "iters_per_epoch": iters,
            "started_utc": "2026-01-01T00:00:00Z",
        }
        (log_dir / "run_header.json").write_text(json.dumps(header, sort_keys=True))
        log("[swavbench] run header: " + json.dumps(header, sort_keys=True))
        if env("FAKE_STRAY") == "1":
            subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
    steps = open(log_dir / f"steps.{rank}.jsonl", "w", buffering=1)
    for step in range(1, max_step + 1):
        epoch, it = (step - 1) // iters + 1, (step - 1) % iters
        if str(rank) == env("FAKE_CRASH_RANK") and step == int(env("FAKE_CRASH_STEP", "1")):
            if env("FAKE_CRASH_MODE", "raise") == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError(f"fake crash on rank {rank} at step {step}")
        if str(rank) == env("FAKE_HANG_RANK") and step == int(env("FAKE_HANG_STEP", "1")):
            if env("FAKE_HANG_MODE", "sleep") == "sigstop":
                os.kill(os.getpid(), signal.SIGSTOP)
            time.sleep(10_000)
        if sync is not None:
            barrier(sync, rank, world, step)
        cpu_step = float(env("FAKE_CPU_STEP_S", "0")) * slow / ips_scale
        measured = burn(cpu_step) if cpu_step else None
        if measured is None:
            time.sleep(step_s)
        loss = 8.0 * math.exp(-lr * step / 50.0) + 0.1 * math.sin(step)
        if step >= int(env("FAKE_LOSS_BUMP_STEP", "1")):
            loss += bump
        batch_cost = base_cost * (4.0 if step <= warm else 3.0 if step in outliers else 1.0)
        if measured is not None:
            batch_cost = measured
        if env("FAKE_NAN_STEP") and step >= int(env("FAKE_NAN_STEP")):
            loss = float("nan")
        steps.write(
            json.dumps(
                {
                    "step": step,
                    "epoch": epoch,
                    "iter": it,
                    "loss": loss,
                    "lr": lr,
                    "batch_cost": batch_cost,
                    "reader_cost": 0.001,
                }
            )
            + "\n"
        )
        marker_skipped = env("FAKE_NO_MARKER") == "1" and step == max_step
        if it % period == 0 and not marker_skipped:
            eta = int((max_step - step) * batch_cost)
            mem_text = "" if mem == "none" else f", max mem: {mem} GB"
            log(
                f"[Train][Epoch {epoch}/{epochs}][Iter: {it}/{iters}] lr: {lr:.6f}, loss: {loss:.5f}, "
                f"batch_cost: {batch_cost:.5f}, reader_cost: 0.00100, ips: {bs * world / batch_cost:.5f} "
                f"images/sec{mem_text}, eta: {datetime.timedelta(seconds=eta)}"
            )
    steps.close()
    log(f"global_step({max_step}) >= max_train_step({max_step}), training stops early.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
