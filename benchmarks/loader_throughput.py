"""Images/s of the SwAV multi-crop loader (decode + all crops + collate) on a synthetic set.

    python benchmarks/loader_throughput.py [--images 96] [--batch 16] [--workers 0 2]

Crop settings: reference 2x224+6x96 and 2x96+4x48 on 256 px images, the CPU profile's 2x32+6x16 on
64 px images. The first batch (worker start-up) is not timed. The load average is printed because
other processes on the machine change the numbers.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from swavbench.train.data import build_pretrain_loader
from swavbench.train.synth import synthesize

SETTINGS = [  # name, size_crops, num_crops, min_scale, max_scale, image size
    ("2x224+6x96", [224, 96], [2, 6], [0.14, 0.05], [1.0, 0.14], 256),
    ("2x96+4x48", [96, 48], [2, 4], [0.14, 0.05], [1.0, 0.14], 256),
    ("2x32+6x16 (cpu profile)", [32, 16], [2, 6], [0.14, 0.05], [1.0, 0.14], 64),
]


def measure(root: Path, setting: tuple, workers: int, batch: int) -> float:
    """Images per second over one epoch after the first batch."""
    _, size_crops, num_crops, lo, hi, _ = setting
    dataset = {
        "root": str(root),
        "size_crops": size_crops,
        "num_crops": num_crops,
        "min_scale_crops": lo,
        "max_scale_crops": hi,
    }
    config = {
        "DataLoader": {
            "Train": {"dataset": dataset, "sampler": {"batch_size": batch}, "loader": {"num_workers": workers}}
        }
    }
    loader, sampler = build_pretrain_loader(config, rank=0, world_size=1, seed=0)
    sampler.set_epoch(0)
    iterator = iter(loader)
    next(iterator)
    start, images = time.perf_counter(), 0
    for crops in iterator:
        images += crops[0].shape[0]
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=96, help="images in the synthetic set (default 96)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts (0 2)")
    args = parser.parse_args()
    classes = 4
    with tempfile.TemporaryDirectory() as tmp:
        roots = {}
        for px in sorted({s[-1] for s in SETTINGS}):
            roots[px] = Path(tmp) / f"px{px}"
            synthesize(
                roots[px],
                classes=classes,
                train_per_class=max(1, args.images // classes),
                val_per_class=0,
                size=px,
                seed=0,
            )
        print(
            f"multi-crop loader throughput, batch {args.batch}, {args.images} images, "
            f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}"
        )
        print(f"{'crops':<26}{'image px':>9}" + "".join(f"{f'{w} workers':>14}" for w in args.workers))
        for setting in SETTINGS:
            rates = [measure(roots[setting[-1]], setting, w, args.batch) for w in args.workers]
            print(f"{setting[0]:<26}{setting[-1]:>9}" + "".join(f"{r:>9.1f} img/s" for r in rates))


if __name__ == "__main__":
    main()
