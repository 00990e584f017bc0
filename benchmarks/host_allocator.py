"""The host allocator setting, with and without, on this CPU: is glibc's tuning faster here?

    python benchmarks/host_allocator.py [--pairs 5] [--workloads tiny r50 r50x2 scale swav]

Each measurement is a fresh process (the setting applies to one process, as in the trainer: after paddle
is imported) running one workload; settings alternate in pairs (default, glibc-tuned / glibc-tuned,
default, ...). Per workload it prints the median seconds of each (wall and process CPU), the minor page
faults, and the per-pair ratio setting / default, with this CPU's vendor and instruction-set level: the
figures behind swavbench.train.host_allocator.BY_VENDOR. `--settings glibc-tuned glibc-keep` compares both. Workloads:
  tiny   bare resnet_tiny forward+backward, CPU-profile crops (2x32 + 6x16, batch 8), 1 thread
  r50    bare ResNet-50 forward+backward, 2x96 + 6x48 crops, batch 4, 1 thread (the issue's setting)
  r50x2  the same at 2 threads
  scale  x * 0.5 on 4M floats (the micro-benchmark the tuning was made for)
  swav   the real trainer, CPU profile, one rank, median batch_cost of steps 3-12 (its CPU: the whole process)
  case   the CPU swav_pt_1n8c_fp16o1 case (`swavbench run`, 8 gloo ranks): rank 0's median batch_cost of the
         steps after the 5th (its CPU: all ranks and launcher, from the children's rusage)
Wall seconds are the figure on a quiet machine; on a shared one, the process CPU seconds (user + system, page
faults included) are the steadier comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired import alternate, load_note  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SETTINGS = ("default", "glibc-tuned", "glibc-keep")  # swavbench.train.host_allocator.SETTINGS
WORKLOADS = {  # name: (backbone, [(images, size)], threads)
    "tiny": ("resnet_tiny", [(16, 32), (48, 16)], 1),
    "r50": ("resnet50", [(8, 96), (24, 48)], 1),
    "r50x2": ("resnet50", [(8, 96), (24, 48)], 2),
}


def trunk_child(backbone: str, shapes: list, repeats: int) -> dict:
    """In the child: median wall/CPU seconds of trunk forward+backward after 2 warm-up passes."""
    import paddle

    from swavbench.train.model import build_backbone
    from swavbench.train.runtime import tune_host_allocator

    header = tune_host_allocator()
    paddle.set_device("cpu")
    paddle.seed(0)
    trunk = build_backbone(backbone)
    crops = [paddle.randn([n, 3, s, s]) for n, s in shapes]
    walls, cpus = [], []
    for _ in range(repeats + 2):
        wall, cpu = time.perf_counter(), time.process_time()
        paddle.concat([trunk(c) for c in crops]).sum().backward()
        trunk.clear_gradients()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall": statistics.median(walls[2:]), "cpu": statistics.median(cpus[2:]), "header": header}


def scale_child(repeats: int) -> dict:
    import paddle

    from swavbench.train.runtime import tune_host_allocator

    header = tune_host_allocator()
    paddle.set_device("cpu")
    x = paddle.randn([4 * 1024 * 1024])
    walls, cpus = [], []
    for _ in range(repeats * 20 + 5):
        wall, cpu = time.perf_counter(), time.process_time()
        (x * 0.5).numpy()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall": statistics.median(walls[5:]), "cpu": statistics.median(cpus[5:]), "header": header}


def child(workload: str, repeats: int) -> None:
    if workload == "scale":
        out = scale_child(repeats)
    else:
        backbone, shapes, _ = WORKLOADS[workload]
        out = trunk_child(backbone, shapes, repeats)
    out["minflt"] = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    print(json.dumps(out))


def swav_run(setting: str, data: Path, out: Path) -> dict:
    """The trainer (CPU profile, one rank, 12 steps): median batch_cost of steps 3-12."""
    cmd = [sys.executable, "-m", "swavbench.cli", "train", "-c", "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1",
           "--profile", "cpu", "-o", f"DataLoader.Train.dataset.root={data}", "-o", f"Global.output_dir={out}",
           "-o", "Global.max_train_step=12", "-o", "Global.print_batch_step=100",
           "-o", "DataLoader.Train.loader.num_workers=0"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    env.update(SWAVBENCH_HOST_ALLOCATOR=setting, OMP_NUM_THREADS="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    steps = [json.loads(line) for line in (out / "steps.0.jsonl").read_text().splitlines()]
    header = json.loads((out / "run_header.json").read_text())["host_allocator"]
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime  # the whole process, start-up too
    return {"wall": statistics.median(s["batch_cost"] for s in steps[2:]), "cpu": cpu,
            "minflt": after.ru_minflt - before.ru_minflt, "header": header}


def case_run(setting: str) -> dict:
    """The 1n8c CPU case through `swavbench run`: rank 0's median batch_cost after step 5."""
    with tempfile.TemporaryDirectory() as reports:
        env = dict(os.environ, SWAVBENCH_HOST_ALLOCATOR=setting)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([str(Path(sys.executable).parent / "swavbench"), "run", "swav_pt_1n8c_fp16o1", "--profile",
                        "cpu", "--reports-dir", reports], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        log = next(Path(reports, "runs").iterdir()) / "log"
        steps = [json.loads(line) for line in (log / "steps.0.jsonl").read_text().splitlines()][5:]
        header = json.loads((log / "run_header.json").read_text())["host_allocator"]
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {"wall": statistics.median(s["batch_cost"] for s in steps), "cpu": cpu,
            "minflt": after.ru_minflt - before.ru_minflt, "header": header}


def measure(setting: str, workload: str, repeats: int, data: Path) -> dict:
    if workload == "case":
        return case_run(setting)
    if workload == "swav":
        with tempfile.TemporaryDirectory() as out:
            return swav_run(setting, data, Path(out))
    threads = WORKLOADS.get(workload, (None, None, 1))[2]
    env = dict(os.environ, SWAVBENCH_HOST_ALLOCATOR=setting, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, __file__, "--child", workload, "--repeats", str(repeats)], env=env,
                          check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report(workload: str, results: list, setting: str) -> None:
    def med(side: int, key: str):
        vals = [r[side][key] for r in results if r[side][key] is not None]
        return statistics.median(vals) if vals else None

    ratios = [b["wall"] / a["wall"] for a, b in results]
    cpu_ratios = [b["cpu"] / a["cpu"] for a, b in results]
    faults = f" | minor faults {med(0, 'minflt'):.0f} vs {med(1, 'minflt'):.0f}"
    cpu = (f" | cpu {med(0, 'cpu'):.4f} vs {med(1, 'cpu'):.4f} s, ratio {statistics.median(cpu_ratios):.3f}"
           f" (pairs {min(cpu_ratios):.3f}-{max(cpu_ratios):.3f})")
    print(f"{workload:<6} wall default {med(0, 'wall'):.4f} s, {setting} {med(1, 'wall'):.4f} s | {setting}/default "
          f"{statistics.median(ratios):.3f} (pairs {min(ratios):.3f}-{max(ratios):.3f}){cpu}{faults}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per process (after 2 warm-up)")
    parser.add_argument("--workloads", nargs="+", default=["tiny", "r50", "r50x2", "scale", "swav"],
                        choices=[*WORKLOADS, "scale", "swav", "case"])
    parser.add_argument("--settings", nargs="+", default=["glibc-tuned"], choices=SETTINGS[1:],
                        help="settings each compared with glibc's default (default: glibc-tuned)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child, args.repeats)
    from swavbench.machine import cpu_identity

    ident = cpu_identity()
    print(f"host allocator on {ident['model']} ({ident['vendor']}, {ident['isa']}), {load_note()}")
    print("command: python benchmarks/host_allocator.py " + " ".join(sys.argv[1:]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        if "swav" in args.workloads:
            subprocess.run([sys.executable, "-m", "swavbench.cli", "data", "synth", "--out", str(data), "--classes",
                            "4", "--train-per-class", "32", "--val-per-class", "1", "--size", "48"],
                           check=True, stdout=subprocess.DEVNULL)
        for workload in args.workloads:
            for setting in args.settings:
                results = alternate(lambda w=workload: measure("default", w, args.repeats, data),
                                    lambda w=workload, s=setting: measure(s, w, args.repeats, data), args.pairs)
                report(workload, results, setting)
    from swavbench.train.host_allocator import choose

    setting, why = choose(ident["vendor"])
    print(f"the trainer's choice here: {setting} ({why}); {load_note()} at end")


if __name__ == "__main__":
    main()
