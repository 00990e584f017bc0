"""A seeded distributed batch sampler whose batches carry the epoch to the dataset.

Every batch is a list of `(epoch, index)` keys. The dataset seeds its augmentation from the key, so the
epoch reaches loader worker processes with the indices themselves: nothing depends on worker state,
fork, or `persistent_workers`, and a run is repeatable whatever the number of workers.

Order: `np.random.default_rng([seed, epoch]).permutation(n)` (or 0..n-1 without shuffle); rank r takes
positions r, r + W, r + 2W, ... of it (W = world size).
- drop_last=True: every rank keeps n // W samples and yields only full batches.
- drop_last=False: the order is padded by wrapping around to a multiple of W, so every rank yields the
  same number of batches (the last one may be short). The padded duplicates are the LAST
  `local_padding` samples of each rank: an evaluation drops that many of its final predictions
  (or uses `real_mask`), so no sample is counted twice.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np


class SeededDistributedBatchSampler:
    """Batches of `(epoch, index)` keys for one rank; pass it as `paddle.io.DataLoader(batch_sampler=...)`."""

    def __init__(
        self,
        num_samples: int,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
    ) -> None:
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size or num_samples < 0:
            raise ValueError(
                f"sampler: need batch_size >= 1 and 0 <= rank < world_size "
                f"(got batch_size={batch_size}, rank={rank}, world_size={world_size})"
            )
        self.num_samples, self.batch_size = num_samples, batch_size
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.shuffle, self.drop_last = shuffle, drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation (and the epoch in the keys) of the next iteration."""
        self.epoch = int(epoch)

    @property
    def local_size(self) -> int:
        """Samples this rank yields per epoch (padding included when drop_last is False)."""
        if self.drop_last:
            return (self.num_samples // self.world_size) // self.batch_size * self.batch_size
        return -(-self.num_samples // self.world_size)

    @property
    def local_padding(self) -> int:
        """How many of this rank's samples (its last ones) are wrap-around duplicates."""
        if self.drop_last:
            return 0
        real = len(range(self.rank, self.num_samples, self.world_size))
        return self.local_size - real

    def real_mask(self) -> np.ndarray:
        """bool [local_size]: True where this rank's sample is not padding."""
        mask = np.ones(self.local_size, dtype=bool)
        mask[self.local_size - self.local_padding :] = False
        return mask

    def local_indices(self, epoch: int | None = None) -> np.ndarray:
        """This rank's dataset indices, in yield order, for `epoch` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        n, world = self.num_samples, self.world_size
        if self.shuffle:
            order = np.random.default_rng([self.seed, epoch]).permutation(n)
        else:
            order = np.arange(n)
        if not self.drop_last and n % world:
            order = np.resize(order, -(-n // world) * world) if n else order  # wrap-around padding
        return order[self.rank :: world][: self.local_size]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        indices = self.local_indices()
        for start in range(0, len(indices), self.batch_size):
            yield [(self.epoch, int(i)) for i in indices[start : start + self.batch_size]]

    def __len__(self) -> int:
        """Iterations per epoch."""
        return -(-self.local_size // self.batch_size)
