"""SwAV step cost vs a bare trunk, the loader's share of a step, and the PASSL comparison point.

Prints, on this machine, one process:
  1. CPU profile (resnet_tiny, 2x32+6x16, batch 8) and ResNet-50 at 2x96+4x48, batch 8:
     SwAV step time (real trainer, real multi-crop loader, from steps.0.jsonl) vs bare trunk
     forward+backward on crops of the same shapes (target: overhead <= 10%), and the fraction of
     batch_cost spent in reader_cost (target: <= 5% with the default worker count).
  2. ResNet-50, 3000 prototypes, batch 4, crops 2x96+6x48: SwAV step time. PASSL's own SwAV step measures
     4.98 s on this machine (one core); the target is at most half of that (2.49 s).

Usage: python benchmarks/step_overhead.py [--steps N] [--threads T] [--workers W]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PT_CONFIG = "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1"


def make_dataset(root: Path, size: int) -> Path:
    out = root / f"synth{size}"
    subprocess.run([sys.executable, "-m", "swavbench.cli", "data", "synth", "--out", str(out), "--classes", "4",
                    "--train-per-class", "24", "--val-per-class", "2", "--size", str(size), "--seed", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def swav_steps(data: Path, out: Path, overrides: list[str], steps: int, cpu_profile: bool) -> list[dict]:
    """Run the real trainer in a subprocess (one rank) and return its per-step records."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "swavbench.cli", "train", "-c", PT_CONFIG]
    if cpu_profile:
        cmd += ["--profile", "cpu"]
    cmd += ["-o", f"DataLoader.Train.dataset.root={data}", "-o", f"Global.output_dir={out}",
            "-o", "Global.device=cpu", "-o", "Model.queue_length=0", "-o", f"Global.max_train_step={steps}",
            "-o", "Global.print_batch_step=1000"] + [x for o in overrides for x in ("-o", o)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return [json.loads(line) for line in (out / "steps.0.jsonl").read_text().splitlines()]


def bare_trunk_seconds(backbone: str, shapes: list[tuple[int, int]], repeats: int) -> float:
    """Median seconds of trunk forward+backward on random crops of the given (count*batch, size) groups."""
    import paddle

    from swavbench.train.model import build_backbone
    from swavbench.train.runtime import tune_host_allocator

    tune_host_allocator()  # the trainer does the same: compare like with like
    paddle.set_device("cpu")
    trunk = build_backbone(backbone)
    crops = [paddle.randn([n, 3, s, s]) for n, s in shapes]
    times = []
    for _ in range(repeats + 2):
        tic = time.perf_counter()
        features = paddle.concat([trunk(c) for c in crops])
        features.sum().backward()
        trunk.clear_gradients()
        times.append(time.perf_counter() - tic)
    return statistics.median(times[2:])


def report(name: str, records: list[dict], bare: float | None, warmup: int) -> None:
    steady = records[warmup:]
    step = statistics.median(r["batch_cost"] for r in steady)
    reader = sum(r["reader_cost"] for r in steady) / sum(r["batch_cost"] for r in steady)
    line = f"{name:<46} swav step {step:7.3f} s"
    if bare is not None:
        line += f" | bare trunk fwd+bwd {bare:7.3f} s | overhead {100 * (step / bare - 1):+6.1f}% (target <= 10%)"
    line += f" | reader {100 * reader:5.2f}% of batch_cost (target <= 5%)"
    print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="measured steps after 2 warm-up steps")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (this machine: 2 cores)")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the CPU profile's, 1)")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    common = [f"Global.num_threads={args.threads}"]
    if args.workers is not None:
        common.append(f"DataLoader.Train.loader.num_workers={args.workers}")
    steps, warmup = args.steps + 2, 2
    print(f"threads={args.threads}, steps={args.steps} (+{warmup} warm-up), one process, CPU", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        small, large = make_dataset(tmp_path, 48), make_dataset(tmp_path, 128)

        recs = swav_steps(small, tmp_path / "cpu", common, steps, cpu_profile=True)
        report("CPU profile: resnet_tiny 2x32+6x16, batch 8", recs,
               bare_trunk_seconds("resnet_tiny", [(16, 32), (48, 16)], args.steps), warmup)

        # ResNet-50 settings on top of the CPU profile (so its loader defaults apply): the real head and prototypes
        full = ["Model.backbone.type=resnet50", "Model.backbone.hidden_mlp=2048", "Model.backbone.output_dim=128",
                "Model.backbone.nmb_prototypes=3000"]
        r50 = common + full + ["DataLoader.Train.sampler.batch_size=8",
                        "DataLoader.Train.dataset.size_crops=[96, 48]", "DataLoader.Train.dataset.num_crops=[2, 4]",
                        "Model.nmb_crops=[2, 4]"]
        recs = swav_steps(large, tmp_path / "r50", r50, steps, cpu_profile=True)
        report("ResNet-50 2x96+4x48, batch 8, 3000 prototypes", recs,
               bare_trunk_seconds("resnet50", [(16, 96), (32, 48)], args.steps), warmup)

        passl = common + full + ["DataLoader.Train.sampler.batch_size=4",
                          "DataLoader.Train.dataset.size_crops=[96, 48]", "DataLoader.Train.dataset.num_crops=[2, 6]",
                          "Model.nmb_crops=[2, 6]"]
        recs = swav_steps(large, tmp_path / "passl", passl, steps, cpu_profile=True)
        step = statistics.median(r["batch_cost"] for r in recs[warmup:])
        print(f"{'ResNet-50 2x96+6x48, batch 4, 3000 prototypes':<46} swav step {step:7.3f} s | PASSL 4.98 s | "
              f"ratio {step / 4.98:.2f} (target <= 0.50)", flush=True)


if __name__ == "__main__":
    main()
