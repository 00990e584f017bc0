"""A synthetic ImageNet-layout dataset of real JPEG files with visually distinct classes.

    <out>/train/<class>/<class>_<i>.JPEG, <out>/val/<class>/<class>_<i>.JPEG,
    <out>/1percent.txt, <out>/10percent.txt (SimCLR format), <out>/synth.json (the parameters)

A class is a texture: one of 10 families (horizontal / vertical stripes, checkerboard, rings, dots, grid,
spokes, wavy bands, diamonds, discs); classes beyond 10 are the families at another scale, line thickness
and rotation. Colour is NOT a class cue: every image draws its own two-colour palette (any hues, light and
dark in either order), plus its own phase, centre, frequency wobble and pixel noise. So the classes are
visually distinct in structure, and a model must look past colour to tell them apart - what SwAV's colour
augmentations teach, and what a randomly initialised network's features (dominated by colour) do not give
(issue 4: tests/test_classify.py). Every image has its own generator `default_rng([seed, split, class,
i])`: the same arguments give the same bytes.
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
STYLE_VERSION = 2  # bump when render_image changes: cached datasets are keyed by it (swavbench.harness.cases.SynthData)


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


FAMILIES = 10  # texture families; class k is family k % 10 at style variant k // 10


def _pattern(family: int, rng: np.random.Generator, xx: np.ndarray, yy: np.ndarray, cycles: float,
             level: float) -> np.ndarray:
    """Boolean foreground mask of one texture family (random phase and centre: position is not a cue)."""
    phase = rng.uniform(0, 2 * math.pi, size=2)
    cx, cy = rng.uniform(0.3, 0.7, size=2)

    def wave(t: np.ndarray, k: int = 0) -> np.ndarray:
        return np.sin(2 * math.pi * cycles * t + phase[k])

    if family == 0:  # horizontal stripes
        return wave(yy + 0 * xx) > level
    if family == 1:  # vertical stripes
        return wave(xx + 0 * yy) > level
    if family == 2:  # checkerboard
        return (wave(xx) > level) ^ (wave(yy, 1) > 0)
    if family == 3:  # concentric rings
        return wave(np.hypot(xx - cx, yy - cy)) > level
    if family == 4:  # dots on a grid
        return wave(xx) * wave(yy, 1) > 0.5 + 0.3 * level
    if family == 5:  # grid of thin lines
        return (np.abs(np.sin(math.pi * cycles * xx + phase[0])) < 0.25 + 0.1 * level) | (
            np.abs(np.sin(math.pi * cycles * yy + phase[1])) < 0.25 + 0.1 * level
        )
    if family == 6:  # radial spokes
        return np.sin(np.arctan2(yy - cy, xx - cx) * 2 * round(cycles + 2) + phase[0]) > level
    if family == 7:  # wavy horizontal bands
        return wave(yy + 0.08 * np.sin(2 * math.pi * 2 * xx + phase[1])) > level
    if family == 8:  # diamonds (two diagonal gratings)
        return (wave(xx + yy) > level) & (wave(xx - yy, 1) > 0)
    blobs = np.zeros(np.broadcast(xx, yy).shape, dtype=bool)  # family 9: a few large discs
    for _ in range(3):
        bx, by = rng.uniform(0, 1, size=2)
        blobs |= (xx - bx) ** 2 + (yy - by) ** 2 < rng.uniform(0.1, 0.2) ** 2
    return blobs


def render_image(rng: np.random.Generator, class_index: int, num_classes: int, size: int) -> np.ndarray:
    """One uint8 [size, size, 3] image of class `class_index` (see module doc)."""
    family, variant = class_index % FAMILIES, class_index // FAMILIES
    # the style variant (classes beyond the first 10): scale, line thickness, then a rotation of the pattern
    cycles = (4.0, 2.5, 6.0)[variant % 3] * rng.uniform(0.75, 1.25)  # cycles across the image
    level = (0.0, 0.5, -0.5)[(variant // 3) % 3]
    angle = math.pi * ((variant // 9) * 0.6180339 % 1.0)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    y0, x0 = coords[:, None], coords[None, :]
    xx = x0 * math.cos(angle) - y0 * math.sin(angle) + 0.5
    yy = x0 * math.sin(angle) + y0 * math.cos(angle) + 0.5
    mask = _pattern(family, rng, xx, yy, cycles, level)

    # colour is a nuisance: a random palette per image (light and dark, any hues)
    hue = rng.random()
    light = _rgb(hue, rng.uniform(0.3, 0.9), rng.uniform(0.6, 0.95))
    dark = _rgb(hue + rng.uniform(0.25, 0.75), rng.uniform(0.3, 0.9), rng.uniform(0.1, 0.45))
    if rng.random() < 0.5:
        light, dark = dark, light
    img = np.where(mask[..., None], light, dark)
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
        "style_version": STYLE_VERSION,
    }
    (out / MARKER).write_text(json.dumps(params, sort_keys=True) + "\n", encoding="utf-8")
    return SynthResult(
        out, classes, classes * train_per_class, classes * val_per_class, subset_lines, time.perf_counter() - start
    )
