"""PASSL's classification transform list (linear probe / fine-tune) as a seeded PIL + numpy pipeline.

Config form (DataLoader.<Train|Eval>.dataset.transform), e.g.

    - RandomResizedCrop: {size: 224}
    - RandomHorizontalFlip:
    - ToTensor:
    - Normalize: {mean: [0.485, 0.456, 0.406], std: [0.228, 0.224, 0.225]}

Image steps (RandomResizedCrop, RandomHorizontalFlip, Resize, CenterCrop) come first, then ToTensor, then
Normalize. The output must have a fixed size so samples batch. Random draws come from the generator given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
from PIL import Image

from swavbench.errors import ConfigError
from swavbench.train.augment import random_resized_crop_box

INTERPOLATION = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}

# name -> (allowed arguments, required arguments)
KNOWN = {
    "RandomResizedCrop": ({"size", "scale", "ratio", "interpolation"}, {"size"}),
    "RandomHorizontalFlip": ({"prob", "p"}, set()),
    "Resize": ({"size", "interpolation"}, {"size"}),
    "CenterCrop": ({"size"}, {"size"}),
    "ToTensor": (set(), set()),
    "Normalize": ({"mean", "std"}, {"mean", "std"}),
}

ImageStep = Callable[[Image.Image, np.random.Generator], Image.Image]


@dataclass
class ClassificationTransform:
    """Image steps, then ToTensor ([3, H, W] float32 in [0, 1]) and an optional Normalize."""

    steps: list[ImageStep] = field(default_factory=list)
    mean: Optional[np.ndarray] = None
    std: Optional[np.ndarray] = None
    output_size: tuple[int, int] = (0, 0)  # (height, width)

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> np.ndarray:
        for step in self.steps:
            img = step(img, rng)
        x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) * np.float32(1 / 255)
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return np.ascontiguousarray(x, dtype=np.float32)


def _size_pair(name: str, value: Any, where: str) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise ConfigError(f"{where}: {name}.size must be a positive int or [height, width], got {value!r}")


def _random_resized_crop(args: dict, where: str) -> tuple[ImageStep, tuple[int, int]]:
    height, width = _size_pair("RandomResizedCrop", args["size"], where)
    scale = tuple(args.get("scale", (0.08, 1.0)))
    ratio = tuple(args.get("ratio", (3 / 4, 4 / 3)))
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1 or len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
        raise ConfigError(f"{where}: RandomResizedCrop scale/ratio must be [min, max] ranges")
    interp = _interpolation(args, where)

    def step(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        left, top, w, h = random_resized_crop_box(rng, img.width, img.height, scale, ratio)
        return img.resize((width, height), interp, box=(left, top, left + w, top + h))

    return step, (height, width)


def _flip(args: dict, where: str) -> ImageStep:
    prob = float(args.get("prob", args.get("p", 0.5)))
    if not 0 <= prob <= 1:
        raise ConfigError(f"{where}: RandomHorizontalFlip.prob must be in [0, 1], got {prob}")

    def step(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        return img.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < prob else img

    return step


def _resize(args: dict, where: str) -> tuple[ImageStep, Optional[tuple[int, int]]]:
    size, interp = args["size"], _interpolation(args, where)
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:

        def shorter_side(img: Image.Image, rng: np.random.Generator) -> Image.Image:
            w, h = img.size
            if w <= h:
                return img.resize((size, int(size * h / w)), interp)
            return img.resize((int(size * w / h), size), interp)

        return shorter_side, None
    height, width = _size_pair("Resize", size, where)
    return (lambda img, rng: img.resize((width, height), interp)), (height, width)


def _center_crop(args: dict, where: str) -> tuple[ImageStep, tuple[int, int]]:
    height, width = _size_pair("CenterCrop", args["size"], where)

    def step(img: Image.Image, rng: np.random.Generator) -> Image.Image:
        top = int(round((img.height - height) / 2.0))
        left = int(round((img.width - width) / 2.0))
        return img.crop((left, top, left + width, top + height))  # zero-padded when the image is smaller

    return step, (height, width)


def _interpolation(args: dict, where: str) -> int:
    name = str(args.get("interpolation", "bilinear")).lower()
    if name not in INTERPOLATION:
        raise ConfigError(f"{where}: interpolation {name!r} unknown (known: {', '.join(INTERPOLATION)})")
    return INTERPOLATION[name]


def _parse_item(item: Any, where: str) -> tuple[str, dict]:
    if isinstance(item, str):
        item = {item: None}
    if not isinstance(item, dict) or len(item) != 1:
        raise ConfigError(f"{where}: each transform is one `Name: {{args}}` mapping, got {item!r}")
    (name, args), = item.items()
    if name not in KNOWN:
        raise ConfigError(f"{where}: unknown transform {name!r} (known: {', '.join(KNOWN)})")
    args = dict(args or {})
    allowed, required = KNOWN[name]
    if set(args) - allowed:
        raise ConfigError(f"{where}: {name}: unknown argument(s) {sorted(set(args) - allowed)}")
    if required - set(args):
        raise ConfigError(f"{where}: {name}: missing argument(s) {sorted(required - set(args))}")
    return name, args


def build_transform(items: Sequence[Any], where: str = "DataLoader.Train.dataset.transform"
                    ) -> ClassificationTransform:
    """Build the pipeline of a PASSL transform list; ConfigError naming an unknown or misplaced transform."""
    if not isinstance(items, (list, tuple)) or not items:
        raise ConfigError(f"{where}: expected a non-empty list of transforms")
    pipeline, size, stage = ClassificationTransform(), None, "image"
    for item in items:
        name, args = _parse_item(item, where)
        if name == "ToTensor":
            stage = "tensor"
        elif name == "Normalize":
            if stage != "tensor":
                raise ConfigError(f"{where}: Normalize must come after ToTensor")
            mean, std = np.asarray(args["mean"], np.float32), np.asarray(args["std"], np.float32)
            if mean.shape != (3,) or std.shape != (3,) or (std <= 0).any():
                raise ConfigError(f"{where}: Normalize needs 3 means and 3 positive stds")
            pipeline.mean, pipeline.std = mean[:, None, None], std[:, None, None]
        elif stage != "image":
            raise ConfigError(f"{where}: {name} must come before ToTensor")
        elif name == "RandomResizedCrop":
            step, size = _random_resized_crop(args, where)
            pipeline.steps.append(step)
        elif name == "RandomHorizontalFlip":
            pipeline.steps.append(_flip(args, where))
        elif name == "Resize":
            step, size = _resize(args, where)
            pipeline.steps.append(step)
        elif name == "CenterCrop":
            step, size = _center_crop(args, where)
            pipeline.steps.append(step)
    if stage != "tensor":
        raise ConfigError(f"{where}: the list needs ToTensor")
    if size is None:
        raise ConfigError(f"{where}: output size is not fixed: end with RandomResizedCrop, CenterCrop "
                          "or Resize [h, w] so samples batch")
    pipeline.output_size = size
    return pipeline
