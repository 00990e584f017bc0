"""The SwAV training step against a bare trunk forward+backward on identical shapes and threads, one run.

    python benchmarks/step_overhead.py [--pairs 3] [--steps 8] [--settings tiny r50 r50x2]

For each setting, in alternating pairs of fresh processes (same OMP threads, same host allocator choice):
  swav  the real trainer, one rank (`swavbench train`, real multi-crop loader): median batch_cost of the
        steps after 2 warm-up steps, from steps.0.jsonl, and the loader's share (reader_cost / batch_cost);
  trunk the model's own trunk, forward+backward of random crops of the same shapes (grouped by resolution as
        the model does), gradients dropped as the trainer drops them: median seconds.
It prints both medians and the per-pair ratio swav / trunk (target: <= 1.05), then, in one process, the
bare trunk and the step made of the trainer's own functions in CPU seconds (their ratio holds on a loaded
machine, where wall seconds do not) and where the difference goes: trunk, projection head + prototypes +
loss with Sinkhorn, backward, optimizer, the rest. Settings:
  tiny   CPU profile: resnet_tiny, 2x32 + 6x16 crops, batch 8, 100 prototypes, 1 thread
  r50    ResNet-50, 3000 prototypes, 2x96 + 6x48 crops, batch 4, 1 thread (issue 16's table)
  r50x2  the same at 2 threads
PASSL's own step is not measured here (its figure from another machine was dropped; issue 16 has PASSL
measured beside swavbench on this machine).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired import alternate, load_note  # noqa: E402

PT_CONFIG = "swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1"
R50 = ["Model.backbone.type=resnet50", "Model.backbone.hidden_mlp=2048", "Model.backbone.output_dim=128",
       "Model.backbone.nmb_prototypes=3000", "DataLoader.Train.sampler.batch_size=4",
       "DataLoader.Train.dataset.size_crops=[96, 48]", "DataLoader.Train.dataset.num_crops=[2, 6]",
       "Model.nmb_crops=[2, 6]"]
SETTINGS = {  # name: (overrides on the CPU profile, threads, image px, batch, [(crops, px)])
    "tiny": ([], 1, 48, 8, [(2, 32), (6, 16)]),
    "r50": (R50, 1, 128, 4, [(2, 96), (6, 48)]),
    "r50x2": (R50, 2, 128, 4, [(2, 96), (6, 48)]),
}
WARMUP = 2


def clean_env(threads: int) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PADDLE_")}
    env["OMP_NUM_THREADS"] = str(threads)
    return env


def swav_step(setting: str, data: Path, steps: int) -> dict:
    """The real trainer, one rank: median batch_cost after the warm-up and the reader share."""
    overrides, threads, _, _, _ = SETTINGS[setting]
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "swavbench.cli", "train", "-c", PT_CONFIG, "--profile", "cpu"]
        for item in [f"DataLoader.Train.dataset.root={data}", f"Global.output_dir={out}", "Model.queue_length=0",
                     f"Global.max_train_step={steps + WARMUP}", "Global.print_batch_step=1000",
                     f"Global.num_threads={threads}", *overrides]:
            cmd += ["-o", item]
        subprocess.run(cmd, check=True, env=clean_env(threads), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        records = [json.loads(x) for x in (Path(out) / "steps.0.jsonl").read_text().splitlines()][WARMUP:]
    return {"s": statistics.median(r["batch_cost"] for r in records),
            "reader": sum(r["reader_cost"] for r in records) / sum(r["batch_cost"] for r in records)}


def child(setting: str, steps: int, what: str) -> dict:
    """In a fresh process: the bare trunk (`trunk`) or the step's parts (`parts`)."""
    import paddle

    from swavbench.train.config import load_config
    from swavbench.train.model import build_pretrain_model
    from swavbench.train.runtime import tune_host_allocator

    overrides, _, _, batch, shapes = SETTINGS[setting]
    tune_host_allocator()  # as the trainer does
    paddle.set_device("cpu")
    paddle.seed(0)
    model = build_pretrain_model(load_config(PT_CONFIG, overrides, "cpu"))
    crops = [paddle.randn([batch, 3, px, px]) for n, px in shapes for _ in range(n)]
    if what == "trunk":
        trunk, groups = model.res_model.encoder, _groups(crops, shapes)
        times = []
        for _ in range(steps + WARMUP):
            tic = time.perf_counter()
            paddle.concat([trunk(g) for g in groups]).sum().backward()
            trunk.clear_gradients(set_to_zero=False)
            times.append(time.perf_counter() - tic)
        return {"s": statistics.median(times[WARMUP:])}
    return step_parts(model, crops, batch, [n for n, _ in shapes], steps)


def _groups(crops: list, shapes: list) -> list:
    import paddle

    out, start = [], 0
    for n, _ in shapes:
        out.append(paddle.concat(crops[start:start + n]))
        start += n
    return out


def step_parts(model, crops: list, batch: int, nmb_crops: list, steps: int) -> dict:
    """CPU seconds (medians) of the trainer's step, part by part, with the trainer's own functions."""
    import paddle
    import paddle.nn.functional as F

    from swavbench.train.model import normalize_prototypes
    from swavbench.train.optim import LARCMomentum
    from swavbench.train.swav import swav_loss

    net, opt, parts = model.res_model, LARCMomentum(list(model.named_parameters())), []
    groups = _groups(crops, [(n, None) for n in nmb_crops])
    for _ in range(steps + WARMUP):
        c = time.process_time()  # the bare trunk first, in the same process: a CPU ratio immune to load
        paddle.concat([net.encoder(g) for g in groups]).sum().backward()
        net.encoder.clear_gradients(set_to_zero=False)
        bare = time.process_time() - c
        t, c = {"bare trunk": bare}, time.process_time()
        features = net.forward_trunk(crops)  # SwAVNet.forward, in its parts
        t["trunk forward"] = time.process_time() - c
        c = time.process_time()
        scores = net.prototypes(F.normalize(net.projection_head(features), axis=1, p=2))
        loss = swav_loss(scores, batch, nmb_crops, [0, 1], 0.1, 0.05, 3)
        t["head + prototypes + loss forward"] = time.process_time() - c
        c = time.process_time()
        loss.backward()
        t["backward (trunk and head)"] = time.process_time() - c
        c = time.process_time()
        opt.step(0.6, None)
        t["optimizer (LARC + momentum)"] = time.process_time() - c
        c = time.process_time()
        opt.clear_grad()
        normalize_prototypes(model)
        float(loss)
        t["clear, normalise prototypes, loss value"] = time.process_time() - c
        parts.append(t)
    return {k: statistics.median(p[k] for p in parts[WARMUP:]) for k in parts[0]}


def run_child(setting: str, steps: int, what: str) -> dict:
    threads = SETTINGS[setting][1]
    proc = subprocess.run([sys.executable, __file__, "--child", setting, what, "--steps", str(steps)],
                          env=clean_env(threads), check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_dataset(root: Path, size: int) -> Path:
    out = root / f"synth{size}"
    subprocess.run([sys.executable, "-m", "swavbench.cli", "data", "synth", "--out", str(out), "--classes", "4",
                    "--train-per-class", "24", "--val-per-class", "2", "--size", str(size), "--seed", "0"],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def report(setting: str, pairs: list, parts: dict) -> None:
    swav = statistics.median(a["s"] for a, _ in pairs)
    trunk = statistics.median(b["s"] for _, b in pairs)
    ratios = [a["s"] / b["s"] for a, b in pairs]
    reader = statistics.median(a["reader"] for a, _ in pairs)
    print(f"{setting:<6} swav step {swav:7.3f} s | bare trunk fwd+bwd {trunk:7.3f} s | swav/trunk "
          f"{statistics.median(ratios):.3f} (pairs {min(ratios):.3f}-{max(ratios):.3f}; target <= 1.05) | "
          f"reader {100 * reader:.1f}% of batch_cost", flush=True)
    bare = parts.pop("bare trunk")
    total = sum(parts.values())
    print(f"       one process, CPU seconds: step {total:.4f} / bare trunk {bare:.4f} = {total / bare:.3f}; the step's "
          "parts: " + ", ".join(f"{k} {v:.4f} ({100 * v / total:.0f}%)" for k, v in parts.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=3, help="alternating (swav, trunk) pairs (default 3)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps after 2 warm-up steps (default 8)")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.steps, args.child[1])))
        return
    print(f"SwAV step vs bare trunk, one process per measurement, {load_note()}")
    print("command: python benchmarks/step_overhead.py " + " ".join(sys.argv[1:]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = {px: make_dataset(Path(tmp), px) for px in sorted({SETTINGS[s][2] for s in args.settings})}
        for setting in args.settings:
            pairs = alternate(lambda s=setting: swav_step(s, data[SETTINGS[s][2]], args.steps),
                              lambda s=setting: run_child(s, args.steps, "trunk"), args.pairs)
            report(setting, pairs, run_child(setting, args.steps, "parts"))
    print(f"{load_note()} at end")


if __name__ == "__main__":
    main()
