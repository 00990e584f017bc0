"""Samples/s of the SwAV multi-crop loader (decode + all crops + collate), per core, on 500x375 JPEGs.

    python benchmarks/loader_throughput.py [--images 64] [--batch 16] [--workers 0 2] [--passes 3]

The reference setting is 2x224 + 6x96 crops of 500x375 JPEGs (ImageNet's typical size; synthetic textures
with noise, quality 90); the CPU profile's 2x32 + 6x16 runs on its own 48 px images. With 0 workers the
loader runs in this process on one core: samples/s there is samples/s per core, and samples per CPU second
(the process's user + system time) is the same figure made steadier on a shared machine. With workers,
the wall rate is shown. Target (issue 16): >= 150 samples/s per core at 2x224 + 6x96. The first batch
(start-up) is not timed; each figure is the median of `--passes` epochs.

`--draft` adds the reduced-size decode lever (PIL `draft`, JPEG DCT scaling to 1/2 before the crops) for
comparison only: it changes the pixels the crops are cut from (and so the loss), and the trainer does not
use it (docs/performance.md).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paired import load_note  # noqa: E402

from swavbench.train import data as data_module  # noqa: E402
from swavbench.train.data import build_pretrain_loader  # noqa: E402
from swavbench.train.synth import render_image, synthesize  # noqa: E402

SETTINGS = [  # name, size_crops, num_crops, min_scale, max_scale, image set
    ("2x224+6x96", [224, 96], [2, 6], [0.14, 0.05], [1.0, 0.14], "500x375"),
    ("2x32+6x16 (cpu profile)", [32, 16], [2, 6], [0.14, 0.05], [1.0, 0.14], "48px"),
]


def photo_like_set(root: Path, images: int, classes: int = 4) -> Path:
    """`<root>/train/<class>/*.JPEG`: 500x375 synthetic textures with pixel noise (JPEG entropy of a photo)."""
    rng = np.random.default_rng(0)
    for i in range(images):
        folder = root / "train" / f"n{i % classes:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = render_image(rng, i % classes, classes, 500)[:375].astype(np.float32)
        pixels = np.clip(pixels + rng.normal(0.0, 8.0, pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"img_{i}.JPEG", format="JPEG", quality=90)
    return root


def load_image_draft(path: str) -> Image.Image:
    """The draft lever: JPEG decoded at 1/2 scale by DCT scaling (changes the pixels)."""
    with Image.open(path) as img:
        img.draft("RGB", (img.width // 2, img.height // 2))
        return img.convert("RGB")


def one_epoch(root: Path, setting: tuple, workers: int, batch: int) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of this process, samples) over one epoch after the first batch."""
    _, size_crops, num_crops, lo, hi, _ = setting
    dataset = {"root": str(root), "size_crops": size_crops, "num_crops": num_crops, "min_scale_crops": lo,
               "max_scale_crops": hi}
    config = {"DataLoader": {"Train": {"dataset": dataset, "sampler": {"batch_size": batch},
                                       "loader": {"num_workers": workers}}}}
    loader, sampler = build_pretrain_loader(config, rank=0, world_size=1, seed=0)
    sampler.set_epoch(0)
    iterator = iter(loader)
    next(iterator)
    wall, cpu, samples = time.perf_counter(), time.process_time(), 0
    for crops in iterator:
        samples += crops[0].shape[0]
    return time.perf_counter() - wall, time.process_time() - cpu, samples


def measure(root: Path, setting: tuple, workers: int, batch: int, passes: int) -> str:
    runs = [one_epoch(root, setting, workers, batch) for _ in range(passes)]
    rate = statistics.median(n / w for w, _, n in runs)
    if workers:
        return f"{rate:8.1f}/s wall"
    per_cpu = statistics.median(n / c for _, c, n in runs if c > 0)
    return f"{rate:8.1f}/s ({per_cpu:6.1f}/cpu-s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64, help="images in each synthetic set (default 64)")
    parser.add_argument("--batch", type=int, default=16, help="batch size (default 16)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts (0 2)")
    parser.add_argument("--passes", type=int, default=3, help="epochs per figure, median (default 3)")
    parser.add_argument("--draft", action="store_true", help="also measure the PIL draft decode (not used)")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        roots = {"500x375": photo_like_set(Path(tmp) / "photo", args.images), "48px": Path(tmp) / "small"}
        synthesize(roots["48px"], classes=4, train_per_class=max(1, args.images // 4), val_per_class=0, size=48)
        jpeg = next((roots["500x375"] / "train").rglob("*.JPEG"))
        print(f"multi-crop loader throughput, batch {args.batch}, {args.images} images a set "
              f"(500x375 JPEGs ~{jpeg.stat().st_size // 1024} KB), {load_note()}")
        print("command: python benchmarks/loader_throughput.py " + " ".join(sys.argv[1:]))
        print(f"{'crops':<34}" + "".join(f"{f'{w} workers':>26}" for w in args.workers))
        variants = [("", data_module.load_image)] + ([(" + draft 1/2", load_image_draft)] if args.draft else [])
        for setting in SETTINGS:
            for suffix, loader_fn in variants:
                if suffix and setting[-1] != "500x375":
                    continue
                data_module.load_image = loader_fn
                cells = [measure(roots[setting[-1]], setting, w, args.batch, args.passes) for w in args.workers]
                print(f"{setting[0] + suffix:<34}" + "".join(f"{c:>26}" for c in cells), flush=True)
        data_module.load_image = variants[0][1]
        print("target: >= 150 samples/s per core at 2x224+6x96 (0 workers = one core); " + load_note() + " at end")


if __name__ == "__main__":
    main()
