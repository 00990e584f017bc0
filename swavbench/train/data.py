"""Image folders, SimCLR subset files, the multi-crop and classification datasets, and their loaders.

Layout: `<root>/<split>/<class>/*.JPEG|jpg|png` (ImageNet). Pre-training reads `<root>/train`; the
classification configs name the split folder itself as their root (PASSL: `.../ILSVRC2012/train`).

Every sample is augmented with `np.random.default_rng([seed, rank, epoch, index])`; the sampler hands the
epoch over in each key (see sampler.py). A failing sample (e.g. a corrupt JPEG) never raises inside a
loader worker (a traceback wall) or paddle's reader thread (a hang): it comes back as zeros with its key
in a status field, and `CheckedLoader` replays it in the caller's thread, raising the real error there
(for a bad image, a one-line DataError naming the file).
"""

from __future__ import annotations

import abc
import os
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import paddle
from PIL import Image

from swavbench.errors import ConfigError, DataError
from swavbench.train.augment import MultiCropSpec, multi_crop, normalize_lut
from swavbench.train.config import get, subset_path
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
    classes = list_classes(folder)
    samples: list[Sample] = []
    for index, name in enumerate(classes):
        files = sorted(e.name for e in os.scandir(folder / name) if e.name.lower().endswith(IMAGE_SUFFIXES))
        if not files:
            hint = (
                " (it holds folders: is the root one level too high?)"
                if any(e.is_dir() for e in os.scandir(folder / name))
                else ""
            )
            raise DataError(f"class folder {folder / name} is empty: no .JPEG/.jpg/.png images{hint}")
        samples.extend((str(folder / name / f), index) for f in files)
    return samples, classes


def list_classes(folder: str | os.PathLike) -> list[str]:
    """Sorted class folder names of a split folder (their index is the label); DataError when none."""
    classes = sorted(entry.name for entry in os.scandir(folder) if entry.is_dir())
    if not classes:
        raise DataError(f"dataset folder {folder} has no class folders (expected {folder}/<class>/*.JPEG)")
    return classes


def read_subset_file(path: str | os.PathLike, root: str | os.PathLike, split: str = "train") -> list[Sample]:
    """SimCLR subset file (one `n04235860_14959.JPEG` a line) -> samples `<root>/<split>/<class>/<file>`."""
    path, folder = Path(path), Path(root) / split
    if not path.is_file():
        raise DataError(f"subset file {path} not found (SimCLR format: one file name a line)")
    if not folder.is_dir():
        raise DataError(f"dataset folder {folder} not found: the subset file {path} names images there")
    class_index = {name: i for i, name in enumerate(list_classes(folder))}
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
        reason = " ".join(str(err).replace(repr(str(path)), "").replace(str(path), "").split()).rstrip(" :")
        raise DataError(f"cannot read image {path}: {reason or type(err).__name__}") from None


def sample_rng(seed: int, rank: int, epoch: int, index: int) -> np.random.Generator:
    """The one generator of a sample's augmentation."""
    return np.random.default_rng([seed, rank, epoch, index])


class _GuardedDataset(paddle.io.Dataset, abc.ABC):
    """`__getitem__` never raises: an exception in paddle's reader thread (num_workers=0) hangs the loader
    for good, and one in a worker becomes a traceback wall. A failed sample comes back as `placeholder`
    with status `[epoch, index]` (else `[-1, -1]`); CheckedLoader then replays `load` in the caller's
    thread, which raises the real error (a DataError is one line naming the file)."""

    samples: list[Sample]

    def __len__(self) -> int:
        return len(self.samples)

    @abc.abstractmethod
    def load(self, index: int, epoch: int) -> list[np.ndarray]:
        """The sample's arrays; raises (e.g. DataError) when it cannot be read."""

    @abc.abstractmethod
    def placeholder(self, index: int) -> list[np.ndarray]:
        """Zeros of the sample's shapes, returned in place of a sample that failed."""

    def __getitem__(self, key: tuple[int, int]) -> list[np.ndarray]:
        if not (isinstance(key, tuple) and len(key) == 2):
            raise TypeError(f"dataset keys are (epoch, index) pairs from SeededDistributedBatchSampler, got {key!r}")
        epoch, index = int(key[0]), int(key[1])
        try:
            return [*self.load(index, epoch), np.array([-1, -1], np.int64)]
        except Exception:  # noqa: BLE001 - replayed and raised by CheckedLoader, never swallowed
            return [*self.placeholder(index), np.array([epoch, index], np.int64)]


class MultiCropDataset(_GuardedDataset):
    """Key `(epoch, index)` -> `[crop_0, ..., crop_{N-1}, status]` (crops float32 [3, s, s], size order)."""

    def __init__(self, samples: Sequence[Sample], spec: MultiCropSpec, seed: int = 0, rank: int = 0) -> None:
        super().__init__()
        self.samples, self.spec, self.seed, self.rank = list(samples), spec, seed, rank
        self.lut = normalize_lut(spec.mean, spec.std)

    def load(self, index: int, epoch: int) -> list[np.ndarray]:
        """The crops of sample `index` at `epoch`; DataError when the image cannot be decoded."""
        img = load_image(self.samples[index][0])
        return multi_crop(img, self.spec, sample_rng(self.seed, self.rank, epoch, index), self.lut)

    def placeholder(self, index: int) -> list[np.ndarray]:
        sizes = [s for s, n in zip(self.spec.size_crops, self.spec.num_crops) for _ in range(n)]
        return [np.zeros((3, s, s), np.float32) for s in sizes]


class ClassificationDataset(_GuardedDataset):
    """Key `(epoch, index)` -> `[image float32 [3, H, W], label int64, status]`; `classes[label]` names it."""

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: ClassificationTransform,
        seed: int = 0,
        rank: int = 0,
        classes: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.samples, self.transform, self.seed, self.rank = list(samples), transform, seed, rank
        self.classes = list(classes)

    def load(self, index: int, epoch: int) -> list[np.ndarray]:
        """`[image, label]` of sample `index` at `epoch`; DataError when the image cannot be decoded."""
        path, label = self.samples[index]
        image = self.transform(load_image(path), sample_rng(self.seed, self.rank, epoch, index))
        return [image, np.int64(label)]

    def placeholder(self, index: int) -> list[np.ndarray]:
        return [np.zeros((3, *self.transform.output_size), np.float32), np.int64(self.samples[index][1])]


class CheckedLoader:
    """Iterates a paddle DataLoader over a guarded dataset, dropping the status field. A failed sample is
    replayed here, in the caller's thread, so its error surfaces cleanly (DataError: one line)."""

    def __init__(self, loader: paddle.io.DataLoader) -> None:
        self.loader, self.dataset = loader, loader.dataset
        self._batches = None  # paddle's iterator of the epoch in progress

    def __iter__(self) -> Iterator[list[paddle.Tensor]]:
        self._batches = iter(self.loader)
        _IN_PROGRESS.append(self._batches)
        for batch in self._batches:
            *data, status = batch
            status = status.numpy()
            failed = np.flatnonzero(status[:, 1] >= 0)
            if failed.size:
                epoch, index = (int(v) for v in status[failed[0]])
                self.dataset.load(index, epoch)  # raises the sample's error here
                path = self.dataset.samples[index][0]
                raise DataError(f"sample {path} failed in the data loader but loads when retried (flaky storage?)")
            yield data
        _forget(self._batches)  # the epoch ended: paddle has shut its iterator down itself

    def __len__(self) -> int:
        return len(self.loader)

    def close(self) -> None:
        """Stop the epoch in progress (a run that ends mid-epoch), without paddle's shutdown sleep."""
        batches, self._batches = self._batches, None
        if batches is not None:
            _shutdown(batches)


_IN_PROGRESS: list = []  # paddle iterators of epochs not run to their end (outlive their CheckedLoader)


def _forget(batches) -> None:
    if any(b is batches for b in _IN_PROGRESS):
        _IN_PROGRESS[:] = [b for b in _IN_PROGRESS if b is not batches]


def _shutdown(batches, timeout_s: float = 10.0) -> None:
    """Shut a paddle DataLoader iterator down. Its single-process form, stopped while the reader thread waits
    on a full queue, sleeps a whole second before it looks again (dataloader_iter.py `_shutdown_thread`); at
    interpreter exit that second is on every rank's way out. Closing the queue first ends the thread, which
    is then joined, and paddle's own shutdown finds nothing left to wait for."""
    _forget(batches)
    thread = getattr(batches, "_thread", None)
    queue = getattr(batches, "_blocking_queue", None)
    if hasattr(batches, "_shutdown_thread") and thread is not None and queue is not None:
        batches._thread_done_event.set()
        queue.close()  # a push blocked on the full queue returns, and the thread ends
        batches._blocking_queue = None  # already closed: paddle's own shutdown skips it
        thread.join(timeout_s)
    shutdown = getattr(batches, "_try_shutdown_all", None)
    if shutdown is not None:
        shutdown()


def close_loaders() -> None:
    """Shut down every loader epoch still in progress (a run stopped at Global.max_train_step, any task)."""
    for batches in list(_IN_PROGRESS):
        _shutdown(batches)


def _make_loader(
    dataset: _GuardedDataset, sampler: SeededDistributedBatchSampler, section: Mapping, split: str
) -> CheckedLoader:
    workers = int(get(section, "loader.num_workers", 0))
    if workers < 0:
        raise ConfigError(f"DataLoader.{split}.loader.num_workers: must be >= 0, got {workers}")
    loader = paddle.io.DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        use_shared_memory=bool(get(section, "loader.use_shared_memory", True)),
        # Fresh workers each epoch (paddle's persistent-worker reset polls with 0.5 s sleeps); either
        # way is correct, since the epoch travels in the keys, not in worker state.
        persistent_workers=False,
    )
    return CheckedLoader(loader)


def _section(config: Mapping, split: str) -> Mapping:
    section = get(config, f"DataLoader.{split}")
    if not isinstance(section, Mapping) or not get(section, "dataset.root"):
        raise ConfigError(f"DataLoader.{split}.dataset.root is not set")
    return section


def build_pretrain_loader(
    config: Mapping, rank: int, world_size: int, seed: int
) -> tuple[CheckedLoader, SeededDistributedBatchSampler]:
    """Multi-crop loader over `<DataLoader.Train.dataset.root>/train`: per batch a list of [B, 3, s, s]
    float32 tensors, one per crop. Call `sampler.set_epoch(e)` before each epoch."""
    section = _section(config, "Train")
    spec = MultiCropSpec.from_config(section["dataset"])
    samples, _ = scan_image_folder(section["dataset"]["root"], "train")
    batch_size = int(get(section, "sampler.batch_size", 64))
    sampler = SeededDistributedBatchSampler(
        len(samples),
        batch_size,
        rank,
        world_size,
        seed,
        shuffle=bool(get(section, "sampler.shuffle", True)),
        drop_last=bool(get(section, "sampler.drop_last", True)),
    )
    if len(sampler) == 0:
        raise DataError(
            f"{len(samples)} training images give no batch of {batch_size} per rank on "
            f"{world_size} rank(s): lower DataLoader.Train.sampler.batch_size or add images"
        )
    dataset = MultiCropDataset(samples, spec, seed, rank)
    return _make_loader(dataset, sampler, section, "Train"), sampler


def classification_samples(dataset: Mapping, split: str) -> tuple[list[Sample], list[str]]:
    """`(samples, classes)` of a classification split: the folder `dataset.root`, or its SimCLR subset
    (`txt_file_name`, found as swavbench.train.config.subset_path says)."""
    folder = Path(dataset["root"])
    txt_path = subset_path(dataset, split)
    if txt_path is not None:
        return read_subset_file(txt_path, folder.parent, folder.name), list_classes(folder)
    return scan_image_folder(folder.parent, folder.name, split)


def build_classification_loader(
    config: Mapping, split: str, rank: int, world_size: int, seed: int
) -> tuple[CheckedLoader, SeededDistributedBatchSampler, int]:
    """Loader of `[images [B, 3, H, W] float32, labels [B] int64]` for DataLoader.<Train|Eval>, its sampler,
    and the number of real samples (`loader.dataset.classes`: the class names). Eval never drops: each
    rank's last `sampler.local_padding` samples are wrap-around duplicates to discard before metrics."""
    if split not in ("Train", "Eval"):
        raise ValueError(f"split must be 'Train' or 'Eval', got {split!r}")
    section = _section(config, split)
    dataset_cfg = section["dataset"]
    transform = build_transform(dataset_cfg.get("transform"), f"DataLoader.{split}.dataset.transform")
    samples, classes = classification_samples(dataset_cfg, split)
    training = split == "Train"
    drop_last = bool(get(section, "sampler.drop_last", False))
    if drop_last and not training:
        raise ConfigError("DataLoader.Eval.sampler.drop_last: must be False (evaluation sees every sample)")
    sampler = SeededDistributedBatchSampler(
        len(samples),
        int(get(section, "sampler.batch_size", 32)),
        rank,
        world_size,
        seed,
        shuffle=bool(get(section, "sampler.shuffle", training)),
        drop_last=drop_last,
    )
    if training and len(sampler) == 0:
        raise DataError(f"{len(samples)} images give no training batch: lower DataLoader.Train.sampler.batch_size")
    dataset = ClassificationDataset(samples, transform, seed, rank, classes)
    return _make_loader(dataset, sampler, section, split), sampler, len(samples)
