"""A synthetic ImageNet-layout dataset of real JPEG files with visually distinct classes.

    <out>/train/<class>/<class>_<i>.JPEG, <out>/val/<class>/<class>_<i>.JPEG,
    <out>/1percent.txt, <out>/10percent.txt (SimCLR format), <out>/synth.json (the parameters)

A class is a style: a two-colour palette (hues spread over the colour wheel), a stripe orientation and
frequency, and a shape (disc, square, triangle) in a third colour. Each image draws its own hue/brightness
jitter, stripe phase, angle and frequency wobble, shape position and scale, an optional distractor blob
and pixel noise, so the classes separate without being identical copies. Every image has its own
generator `default_rng([seed, split, class, i])`: the same arguments give the same bytes.
"""

from __future__ import annotations

import colorsys
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from swavbench.errors import DataError

SPLITS = {"train": 0, "val": 1}
SUBSETS = {"1percent.txt": 0.01, "10percent.txt": 0.10}
MARKER = "synth.json"
MAX_CLASSES = 10_000  # class names keep 8 digits, so their sorted order is the class order


@dataclass(frozen=True)
class SynthResult:
    out: Path
    classes: int
    train_images: int
    val_images: int
    subset_lines: dict
    seconds: float

    def summary(self) -> str:
        subsets = ", ".join(f"{name} ({n} lines)" for name, n in self.subset_lines.items())
        return (
            f"wrote {self.train_images} train + {self.val_images} val JPEGs ({self.classes} classes) to "
            f"{self.out} in {self.seconds:.1f} s; subsets {subsets}"
        )


def class_names(num_classes: int) -> list[str]:
    """WordNet-id-like folder names without underscores, sorted in class-index order."""
    return [f"n{1_000_000 + 7919 * k:08d}" for k in range(num_classes)]


def _rgb(hue: float, sat: float, val: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, sat, val), dtype=np.float32) * 255


def render_image(rng: np.random.Generator, class_index: int, num_classes: int, size: int) -> np.ndarray:
    """One uint8 [size, size, 3] image of class `class_index`."""
    k = class_index
    hue = k / num_classes + rng.uniform(-0.25, 0.25) / num_classes
    background = _rgb(hue, rng.uniform(0.45, 0.9), rng.uniform(0.45, 0.95))
    foreground = _rgb(hue + 0.5, rng.uniform(0.3, 0.8), rng.uniform(0.2, 0.6))
    shape_colour = _rgb(hue + 0.25 + 0.5 * (k % 2), rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0))

    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = coords[:, None], coords[None, :]
    angle = math.pi * ((k * 0.6180339) % 1.0) + rng.normal(0.0, 0.1)
    cycles = (2.0 + (k % 4) * 1.5) * rng.uniform(0.85, 1.15)
    stripes = 0.5 + 0.5 * np.sin(
        2 * math.pi * cycles * (xx * math.cos(angle) + yy * math.sin(angle)) + rng.uniform(0, 2 * math.pi)
    )
    img = background + (foreground - background) * stripes[..., None]

    cx, cy, r = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7), rng.uniform(0.12, 0.28)
    dx, dy = xx - cx, yy - cy
    kind = (k // 2) % 3
    if kind == 0:
        mask = dx * dx + dy * dy < r * r
    elif kind == 1:
        mask = np.maximum(np.abs(dx), np.abs(dy)) < r * 0.85
    else:
        mask = (dy < r * 0.7) & (np.abs(dx) < (dy + r) * 0.6)
    img = np.where(mask[..., None], shape_colour, img)

    if rng.random() < 0.5:  # a distractor blob of a random colour
        bx, by, br = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.12)
        blob = (xx - bx) ** 2 + (yy - by) ** 2 < br * br
        img = np.where(blob[..., None], _rgb(rng.random(), 0.7, 0.8), img)
    img = img + rng.normal(0.0, 10.0, size=img.shape).astype(np.float32)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)


def _prepare(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder")
    if (out / MARKER).is_file():  # our own earlier output: regenerate it in full
        for split in SPLITS:
            shutil.rmtree(out / split, ignore_errors=True)
        return
    taken = [out / name for name in (*SPLITS, *SUBSETS) if (out / name).exists()]
    if taken:
        raise DataError(
            f"{taken[0]} exists and was not written by `swavbench data synth`: "
            f"refusing to overwrite; choose an empty --out folder"
        )


def _subset_lines(names: list[str], train_per_class: int, seed: int, fraction: float) -> list[str]:
    lines = []
    count = max(1, round(fraction * train_per_class))
    for k, name in enumerate(names):
        chosen = np.random.default_rng([seed, 2, k]).permutation(train_per_class)[:count]
        lines.extend(f"{name}_{i}.JPEG" for i in sorted(int(c) for c in chosen))
    return lines  # nested: the 1% files are the first ones of the same permutation as the 10% files


def synthesize(
    out: str | Path,
    classes: int = 10,
    train_per_class: int = 100,
    val_per_class: int = 20,
    size: int = 64,
    seed: int = 0,
) -> SynthResult:
    """Write the dataset (see module doc); DataError when `out` holds something else."""
    if not 1 <= classes <= MAX_CLASSES or train_per_class < 1 or val_per_class < 0 or size < 8:
        raise ValueError(
            f"synthesize: need 1 <= classes <= {MAX_CLASSES}, train_per_class >= 1, val_per_class >= 0, size >= 8"
        )
    start, out = time.perf_counter(), Path(out)
    _prepare(out)
    names = class_names(classes)
    counts = {"train": train_per_class, "val": val_per_class}
    for split, split_id in SPLITS.items():
        for k, name in enumerate(names):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(counts[split]):
                pixels = render_image(np.random.default_rng([seed, split_id, k, i]), k, classes, size)
                Image.fromarray(pixels).save(folder / f"{name}_{i}.JPEG", format="JPEG", quality=90)
    subset_lines = {}
    for file_name, fraction in SUBSETS.items():
        lines = _subset_lines(names, train_per_class, seed, fraction)
        (out / file_name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        subset_lines[file_name] = len(lines)
    params = {
        "classes": classes,
        "train_per_class": train_per_class,
        "val_per_class": val_per_class,
        "size": size,
        "seed": seed,
    }
    (out / MARKER).write_text(json.dumps(params, sort_keys=True) + "\n", encoding="utf-8")
    return SynthResult(
        out, classes, classes * train_per_class, classes * val_per_class, subset_lines, time.perf_counter() - start
    )
