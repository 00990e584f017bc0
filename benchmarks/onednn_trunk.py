"""Paddle's oneDNN CPU path and channels-last for the trunk: faster here, and bit-for-bit repeatable?

    python benchmarks/onednn_trunk.py [--repeats 2] [--backbones tiny r50]

1. The model's trunk, forward+backward on the CPU-profile crops (tiny: resnet_tiny, 16x32 px + 48x16 px) and
   ResNet-50's (8x96 + 24x48), one thread, in a fresh process per variant and repeat: plain, with
   FLAGS_use_mkldnn=1 and with FLAGS_use_onednn=1 in the environment (read when paddle loads). Each prints
   the median CPU seconds of a pass and a digest of the first pass's output and gradients: the same digest
   in every repeat is "bit-for-bit repeatable"; the same digest as plain means the same kernels ran.
2. Conv + BatchNorm forward+backward in NCHW (what the model uses) vs NHWC (channels-last), at trunk shapes.
The bar for making it the CPU profile's default (issue 16): >= 1.5x faster and repeatable.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired import load_note  # noqa: E402

R50 = ["Model.backbone.type=resnet50", "Model.backbone.hidden_mlp=2048", "Model.backbone.output_dim=128",
       "Model.backbone.nmb_prototypes=3000"]
BACKBONES = {"tiny": ([], [(16, 32), (48, 16)]), "r50": (R50, [(8, 96), (24, 48)])}
VARIANTS = {"plain": {}, "FLAGS_use_mkldnn=1": {"FLAGS_use_mkldnn": "1"},
            "FLAGS_use_onednn=1": {"FLAGS_use_onednn": "1"}}


def trunk_child(backbone: str, passes: int = 6) -> dict:
    import numpy as np
    import paddle

    from swavbench.train.config import load_config
    from swavbench.train.model import build_pretrain_model

    overrides, shapes = BACKBONES[backbone]
    paddle.set_device("cpu")
    paddle.seed(0)
    config = load_config("swav_resnet50_224_pt_in1k_1n8c_dp_fp16o1", overrides, "cpu")
    trunk = build_pretrain_model(config).res_model.encoder
    rng = np.random.default_rng(0)
    crops = [paddle.to_tensor(rng.normal(size=(n, 3, s, s)).astype("float32")) for n, s in shapes]
    times, digest = [], ""
    for i in range(passes):
        tic = time.process_time()
        out = paddle.concat([trunk(x) for x in crops])
        out.sum().backward()
        times.append(time.process_time() - tic)
        if i == 0:
            h = hashlib.sha256(out.numpy().tobytes())
            for p in trunk.parameters():
                if p.grad is not None:
                    h.update(p.grad.numpy().tobytes())
            digest = h.hexdigest()[:16]
        trunk.clear_gradients(set_to_zero=False)
    return {"cpu_s": statistics.median(times[2:]), "digest": digest}


def layout_child() -> list:
    import paddle

    paddle.set_device("cpu")
    rows = []
    for n, c, hw in ((24, 256, 12), (8, 64, 48), (24, 64, 24), (48, 16, 16)):
        cells = {}
        for fmt in ("NCHW", "NHWC"):
            x = paddle.randn([n, c, hw, hw] if fmt == "NCHW" else [n, hw, hw, c])
            x.stop_gradient = False
            conv = paddle.nn.Conv2D(c, c, 3, padding=1, data_format=fmt, bias_attr=False)
            bn = paddle.nn.BatchNorm2D(c, data_format=fmt)
            times = []
            for _ in range(6):
                tic = time.process_time()
                bn(conv(x)).sum().backward()
                times.append(time.process_time() - tic)
            cells[fmt] = statistics.median(times[2:])
        rows.append({"shape": [n, c, hw, hw], **cells})
    return rows


def run(args: list, extra_env: dict) -> object:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PADDLE_", "FLAGS_"))}
    env.update(OMP_NUM_THREADS="1", **extra_env)
    proc = subprocess.run([sys.executable, __file__, *args], env=env, check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per variant (default 2)")
    parser.add_argument("--backbones", nargs="+", default=list(BACKBONES), choices=list(BACKBONES))
    parser.add_argument("--child", nargs="+", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(layout_child() if args.child[0] == "layout" else trunk_child(args.child[0])))
        return
    print(f"oneDNN / channels-last for the trunk, 1 thread, {load_note()}")
    print("command: python benchmarks/onednn_trunk.py " + " ".join(sys.argv[1:]), flush=True)
    for backbone in args.backbones:
        plain = None
        for name, env in VARIANTS.items():
            results = [run(["--child", backbone], env) for _ in range(args.repeats)]
            cpu = statistics.median(r["cpu_s"] for r in results)
            digests = sorted({r["digest"] for r in results})
            plain = plain or (cpu, digests)
            print(f"{backbone:<5} {name:<20} {cpu:8.4f} CPU s/pass  speed-up {plain[0] / cpu:5.2f}x | repeatable: "
                  f"{'yes' if len(digests) == 1 else 'NO'} | same kernels as plain: "
                  f"{'yes' if digests == plain[1] else 'no'} (digest {', '.join(digests)})", flush=True)
    for row in run(["--child", "layout"], {}):
        print(f"conv3x3+BN fwd+bwd {row['shape']}: NCHW {row['NCHW'] * 1000:6.1f} ms, "
              f"NHWC {row['NHWC'] * 1000:6.1f} ms, NHWC speed-up {row['NCHW'] / row['NHWC']:.2f}x")
    print("bar for the CPU profile's default: >= 1.5x faster and repeatable; " + load_note() + " at end")


if __name__ == "__main__":
    main()
