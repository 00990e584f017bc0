"""Image folders, SimCLR subset files, the multi-crop and classification datasets, and their loaders.

Layout: `<root>/<split>/<class>/*.JPEG|jpg|png` (ImageNet). Pre-training reads `<root>/train`; the
classification configs name the split folder itself as their root (PASSL: `.../ILSVRC2012/train`).

Every sample is augmented with `np.random.default_rng([seed, rank, epoch, index])`; the sampler hands the
epoch over in each key (see sampler.py). A corrupt image never raises inside a loader worker or paddle's
reader thread (that would print a traceback wall): the sample comes back as zeros plus its index in a
status field, and `CheckedLoader` raises a one-line DataError naming the file in the main thread.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import paddle
from PIL import Image

from swavbench.config import get
from swavbench.errors import ConfigError, DataError
from swavbench.train.augment import MultiCropSpec, multi_crop, normalize_lut
from swavbench.train.sampler import SeededDistributedBatchSampler
from swavbench.train.transforms import ClassificationTransform, build_transform

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)
Sample = tuple[str, int]


def scan_image_folder(root: str | os.PathLike, split: str, section: str = "Train") -> tuple[list[Sample], list[str]]:
    """`(samples, classes)` of `<root>/<split>/<class>/*`: sorted classes, sorted files per class."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise DataError(
            f"dataset folder {folder} not found: set DataLoader.{section}.dataset.root "
            f"or run `swavbench data synth --out {root}`"
        )
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        raise DataError(f"dataset folder {folder} has no class folders (expected {folder}/<class>/*.JPEG)")
    samples: list[Sample] = []
    for index, name in enumerate(classes):
        files = sorted(e.name for e in os.scandir(folder / name) if e.name.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            hint = " (it holds folders: is the root one level too high?)" if any(
                e.is_dir() for e in os.scandir(folder / name)) else ""
            raise DataError(f"class folder {folder / name} is empty: no .JPEG/.jpg/.png images{hint}")
        samples.extend((str(folder / name / f), index) for f in files)
    return samples, classes


def read_subset_file(path: str | os.PathLike, root: str | os.PathLike, split: str = "train") -> list[Sample]:
    """SimCLR subset file (one `n04235860_14959.JPEG` a line) -> samples `<root>/<split>/<class>/<file>`."""
    path, folder = Path(path), Path(root) / split
    if not path.is_file():
        raise DataError(f"subset file {path} not found (SimCLR format: one file name a line)")
    if not folder.is_dir():
        raise DataError(f"dataset folder {folder} not found: the subset file {path} names images there")
    class_index = {name: i for i, name in enumerate(sorted(e.name for e in os.scandir(folder) if e.is_dir()))}
    samples: list[Sample] = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        cls = name.split("_", 1)[0]
        if "_" not in name or cls not in class_index:
            raise DataError(f"{path}:{line_no}: {name!r}: class {cls!r} is not a folder of {folder}")
        image = folder / cls / name
        if not image.is_file():
            raise DataError(f"{path}:{line_no}: image {image} not found")
        samples.append((str(image), class_index[cls]))
    if not samples:
        raise DataError(f"subset file {path} is empty: expected one image file name a line")
    return samples


def load_image(path: str) -> Image.Image:
    """Decode an image to RGB; DataError naming the file when it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except DECODE_ERRORS as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def sample_rng(seed: int, rank: int, epoch: int, index: int) -> np.random.Generator:
    """The one generator of a sample's augmentation."""
    return np.random.default_rng([seed, rank, epoch, index])


class MultiCropDataset(paddle.io.Dataset):
    """Key `(epoch, index)` -> `[crop_0, ..., crop_{N-1}, status]` (crops float32 [3, s, s], size order)."""

    def __init__(self, samples: Sequence[Sample], spec: MultiCropSpec, seed: int = 0, rank: int = 0) -> None:
        super().__init__()
        self.samples, self.spec, self.seed, self.rank = list(samples), spec, seed, rank
        self.lut = normalize_lut(spec.mean, spec.std)

    def __len__(self) -> int:
        return len(self.samples)

    def crops(self, index: int, epoch: int) -> list[np.ndarray]:
        """The crops of sample `index` at `epoch`; DataError when the image cannot be decoded."""
        img = load_image(self.samples[index][0])
        return multi_crop(img, self.spec, sample_rng(self.seed, self.rank, epoch, index), self.lut)

    def __getitem__(self, key: tuple[int, int]) -> list[Any]:
        epoch, index = _split_key(key)
        try:
            return [*self.crops(index, epoch), np.int64(-1)]
        except DataError:
            zeros = [np.zeros((3, s, s), np.float32) for s, n in zip(self.spec.size_crops, self.spec.num_crops)
                     for _ in range(n)]
            return [*zeros, np.int64(index)]


class ClassificationDataset(paddle.io.Dataset):
    """Key `(epoch, index)` -> `[image float32 [3, H, W], label int64, status]`."""

    def __init__(self, samples: Sequence[Sample], transform: ClassificationTransform, seed: int = 0,
                 rank: int = 0) -> None:
        super().__init__()
        self.samples, self.transform, self.seed, self.rank = list(samples), transform, seed, rank

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> list[Any]:
        epoch, index = _split_key(key)
        path, label = self.samples[index]
        try:
            image = self.transform(load_image(path), sample_rng(self.seed, self.rank, epoch, index))
            return [image, np.int64(label), np.int64(-1)]
        except DataError:
            return [np.zeros((3, *self.transform.output_size), np.float32), np.int64(label), np.int64(index)]


def _split_key(key: Any) -> tuple[int, int]:
    if not (isinstance(key, tuple) and len(key) == 2):
        raise TypeError(f"dataset keys are (epoch, index) pairs from SeededDistributedBatchSampler, got {key!r}")
    return int(key[0]), int(key[1])


class CheckedLoader:
    """Iterates a paddle DataLoader over one of these datasets, dropping the status field; a failed sample
    becomes a DataError (one line, the file named) raised here, in the caller's thread."""

    def __init__(self, loader: paddle.io.DataLoader, samples: Sequence[Sample]) -> None:
        self.loader, self.samples = loader, samples

    def __iter__(self) -> Iterator[list[paddle.Tensor]]:
        for batch in self.loader:
            *data, status = batch
            failed = status.numpy()
            if (failed >= 0).any():
                path = self.samples[int(failed[failed >= 0][0])][0]
                try:
                    load_image(path)
                except DataError as err:
                    raise DataError(str(err)) from None
                raise DataError(f"cannot read image {path} in a loader worker (it decodes here: flaky storage?)")
            yield data

    def __len__(self) -> int:
        return len(self.loader)


def _make_loader(dataset: paddle.io.Dataset, sampler: SeededDistributedBatchSampler, section: Mapping,
                 samples: Sequence[Sample]) -> CheckedLoader:
    workers = int(get(section, "loader.num_workers", 0))
    if workers < 0:
        raise ConfigError(f"loader.num_workers must be >= 0, got {workers}")
    loader = paddle.io.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        use_shared_memory=bool(get(section, "loader.use_shared_memory", True)),
        persistent_workers=workers > 0,  # safe: the epoch travels in the keys, not in worker state
    )
    return CheckedLoader(loader, samples)


def _section(config: Mapping, split: str) -> Mapping:
    section = get(config, f"DataLoader.{split}")
    if not isinstance(section, Mapping) or not get(section, "dataset.root"):
        raise ConfigError(f"DataLoader.{split}.dataset.root is not set")
    return section


def build_pretrain_loader(config: Mapping, rank: int, world_size: int, seed: int
                          ) -> tuple[CheckedLoader, SeededDistributedBatchSampler]:
    """Multi-crop loader over `<DataLoader.Train.dataset.root>/train`: per batch a list of [B, 3, s, s]
    float32 tensors, one per crop. Call `sampler.set_epoch(e)` before each epoch."""
    section = _section(config, "Train")
    spec = MultiCropSpec.from_config(section["dataset"])
    samples, _ = scan_image_folder(section["dataset"]["root"], "train")
    batch_size = int(get(section, "sampler.batch_size", 64))
    sampler = SeededDistributedBatchSampler(
        len(samples), batch_size, rank, world_size, seed,
        shuffle=bool(get(section, "sampler.shuffle", True)),
        drop_last=bool(get(section, "sampler.drop_last", True)),
    )
    if len(sampler) == 0:
        raise DataError(f"{len(samples)} training images give no batch of {batch_size} per rank on "
                        f"{world_size} rank(s): lower DataLoader.Train.sampler.batch_size or add images")
    dataset = MultiCropDataset(samples, spec, seed, rank)
    return _make_loader(dataset, sampler, section, samples), sampler


def classification_samples(dataset: Mapping, split: str) -> list[Sample]:
    """The samples of a classification split: the folder `dataset.root`, or its SimCLR subset.

    A relative `txt_file_name` is read from the folder above root (where SimCLR's files and
    `swavbench data synth` put it); `samples_tag: semi_N` alone means `Npercent.txt`, as in PASSL."""
    folder = Path(dataset["root"])
    txt = dataset.get("txt_file_name")
    tag = dataset.get("samples_tag")
    if tag and not txt:
        if tag not in ("semi_1", "semi_10"):
            raise ConfigError(f"DataLoader.{split}.dataset.samples_tag: {tag!r} unknown (semi_1 | semi_10)")
        txt = f"{tag.split('_')[1]}percent.txt"
    if txt:
        txt_path = Path(txt) if Path(txt).is_absolute() else folder.parent / txt
        return read_subset_file(txt_path, folder.parent, folder.name)
    samples, _ = scan_image_folder(folder.parent, folder.name, split)
    return samples


def build_classification_loader(config: Mapping, split: str, rank: int, world_size: int, seed: int
                                ) -> tuple[CheckedLoader, SeededDistributedBatchSampler, int]:
    """Loader of `[images [B, 3, H, W] float32, labels [B] int64]` for DataLoader.<Train|Eval>, its sampler,
    and the number of real samples. Eval never drops: each rank's last `sampler.local_padding` samples
    are wrap-around duplicates to discard before metrics."""
    if split not in ("Train", "Eval"):
        raise ValueError(f"split must be 'Train' or 'Eval', got {split!r}")
    section = _section(config, split)
    dataset_cfg = section["dataset"]
    transform = build_transform(dataset_cfg.get("transform"), f"DataLoader.{split}.dataset.transform")
    samples = classification_samples(dataset_cfg, split)
    training = split == "Train"
    drop_last = bool(get(section, "sampler.drop_last", False))
    if drop_last and not training:
        raise ConfigError("DataLoader.Eval.sampler.drop_last: must be False (evaluation sees every sample)")
    sampler = SeededDistributedBatchSampler(
        len(samples), int(get(section, "sampler.batch_size", 32)), rank, world_size, seed,
        shuffle=bool(get(section, "sampler.shuffle", training)), drop_last=drop_last,
    )
    if training and len(sampler) == 0:
        raise DataError(f"{len(samples)} images give no training batch: lower DataLoader.Train.sampler.batch_size")
    dataset = ClassificationDataset(samples, transform, seed, rank)
    return _make_loader(dataset, sampler, section, samples), sampler, len(samples)
