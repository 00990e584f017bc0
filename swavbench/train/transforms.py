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
from typing import Any, Callable, Optional, Sequence, Union

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


@dataclass(frozen=True)
class RandomResizedCropStep:
    height: int
    width: int
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    interpolation: int = Image.BILINEAR

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        left, top, w, h = random_resized_crop_box(rng, img.width, img.height, self.scale, self.ratio)
        box = (left, top, left + w, top + h)
        return img.resize((self.width, self.height), self.interpolation, box=box)


@dataclass(frozen=True)
class FlipStep:
    prob: float = 0.5

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        return img.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < self.prob else img


@dataclass(frozen=True)
class ResizeStep:
    size: Union[int, tuple[int, int]]  # int: the shorter side; (height, width): exact
    interpolation: int = Image.BILINEAR

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        if isinstance(self.size, tuple):
            return img.resize((self.size[1], self.size[0]), self.interpolation)
        w, h = img.size
        if w <= h:
            return img.resize((self.size, int(self.size * h / w)), self.interpolation)
        return img.resize((int(self.size * w / h), self.size), self.interpolation)


@dataclass(frozen=True)
class CenterCropStep:
    height: int
    width: int

    def __call__(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        top = int(round((img.height - self.height) / 2.0))
        left = int(round((img.width - self.width) / 2.0))
        return img.crop((left, top, left + self.width, top + self.height))  # zero-padded if smaller


@dataclass
class ClassificationTransform:
    """Image steps, then ToTensor ([3, H, W] float32 in [0, 1]) and an optional Normalize. Picklable."""

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
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return int(value[0]), int(value[1])
    raise ConfigError(f"{where}: {name}.size must be a positive int or [height, width], got {value!r}")


def _make_step(name: str, args: dict, where: str) -> tuple[ImageStep, Optional[tuple[int, int]]]:
    """An image step and the output size it fixes (None: not fixed)."""
    if name == "RandomHorizontalFlip":
        prob = float(args.get("prob", args.get("p", 0.5)))
        if not 0 <= prob <= 1:
            raise ConfigError(f"{where}: RandomHorizontalFlip.prob must be in [0, 1], got {prob}")
        return FlipStep(prob), None
    if name == "CenterCrop":
        size = _size_pair(name, args["size"], where)
        return CenterCropStep(*size), size
    interp = _interpolation(args, where)
    if name == "Resize":
        size = args["size"]
        if isinstance(size, int) and not isinstance(size, bool) and size > 0:
            return ResizeStep(size, interp), None
        size = _size_pair(name, size, where)
        return ResizeStep(size, interp), size
    size = _size_pair(name, args["size"], where)  # RandomResizedCrop
    scale, ratio = tuple(args.get("scale", (0.08, 1.0))), tuple(args.get("ratio", (3 / 4, 4 / 3)))
    if len(scale) != 2 or not 0 < scale[0] <= scale[1] <= 1 or len(ratio) != 2 or not 0 < ratio[0] <= ratio[1]:
        raise ConfigError(f"{where}: RandomResizedCrop scale/ratio must be [min, max] ranges")
    return RandomResizedCropStep(size[0], size[1], scale, ratio, interp), size


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
    ((name, args),) = item.items()
    if name not in KNOWN:
        raise ConfigError(f"{where}: unknown transform {name!r} (known: {', '.join(KNOWN)})")
    args = dict(args or {})
    allowed, required = KNOWN[name]
    if set(args) - allowed:
        raise ConfigError(f"{where}: {name}: unknown argument(s) {sorted(set(args) - allowed)}")
    if required - set(args):
        raise ConfigError(f"{where}: {name}: missing argument(s) {sorted(required - set(args))}")
    return name, args


def build_transform(items: Sequence[Any], where: str = "DataLoader.Train.dataset.transform") -> ClassificationTransform:
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
        else:
            step, fixed = _make_step(name, args, where)
            pipeline.steps.append(step)
            if name != "RandomHorizontalFlip":  # a flip keeps the size; any other step sets it
                size = fixed
    if stage != "tensor":
        raise ConfigError(f"{where}: the list needs ToTensor")
    if size is None:
        raise ConfigError(
            f"{where}: output size is not fixed: end with RandomResizedCrop, CenterCrop "
            "or Resize [h, w] so samples batch"
        )
    pipeline.output_size = size
    return pipeline
