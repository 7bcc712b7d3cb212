"""Batches from an in-memory `ImageSet`: shuffled per epoch from a seed, sharded across DDP ranks."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from edgecls.data.imageset import ImageSet
from edgecls.data.transforms import Augment
from edgecls.imaging import Normalization


def rank_seed(seed: int, rank: int) -> int:
    """A seed of its own for each DDP rank; rank 0 keeps `seed`, so single-process runs are unchanged."""
    return seed + rank * 1_000_000_007


class BatchLoader:
    """Yields (normalized float images N×C×H×W, int64 labels) on `device`.

    Every epoch's order and augmentation come from `seed` and the epoch number alone, so a run resumed
    at an epoch boundary sees exactly the batches the uninterrupted run saw. With `world_size` > 1 each
    rank takes its own interleaved share of the same permutation. Training pads the shares to equal length,
    as torch's DistributedSampler does (DDP needs the same number of steps on every rank); evaluation
    (`pad=False`) does not, so no image is counted twice. Augmentation draws differ per rank.
    """

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        normalization: Normalization,
        augment: Augment | None = None,
        shuffle: bool = False,
        seed: int = 0,
        device: str | torch.device = "cpu",
        rank: int = 0,
        world_size: int = 1,
        pad: bool = True,
    ):
        # An image folder's memory map stays on disk: each batch reads only its own rows.
        self.mapped = data.images if isinstance(data.images, np.memmap) else None
        self.images = (
            None
            if self.mapped is not None
            else torch.from_numpy(data.images).permute(0, 3, 1, 2).contiguous().to(device)
        )
        self.device = torch.device(device)
        self.labels = torch.from_numpy(data.labels).to(device)
        self.batch_size = batch_size
        self.normalization = normalization
        self.augment = augment
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.pad = pad

    def _indices(self, epoch: int) -> np.ndarray:
        n = len(self.labels)
        order = np.random.default_rng([self.seed, epoch]).permutation(n) if self.shuffle else np.arange(n)
        if self.world_size > 1:
            if self.pad:
                order = np.resize(order, -(-n // self.world_size) * self.world_size)
            order = order[self.rank :: self.world_size]
        return order

    def num_samples(self) -> int:
        return len(self._indices(0))

    def __len__(self) -> int:
        return -(-self.num_samples() // self.batch_size)

    def _gather(self, idx: torch.Tensor) -> torch.Tensor:
        if self.mapped is None:
            return self.images[idx]
        rows = np.asarray(self.mapped[np.sort(idx.cpu().numpy())])[np.argsort(np.argsort(idx.cpu().numpy()))]
        return torch.from_numpy(rows).permute(0, 3, 1, 2).contiguous().to(self.device)

    def _alternating_flips(self, epoch: int) -> torch.Tensor | None:
        if not (self.augment and self.augment.flip and self.augment.alternating_flip):
            return None
        base = torch.from_numpy(np.random.default_rng([self.seed, 7919]).random(len(self.labels)) < 0.5)
        return (base ^ bool(epoch % 2)).to(self.device)

    def epoch(self, epoch: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(rank_seed(self.seed * 100_003 + epoch * 7, self.rank))
        order = torch.from_numpy(self._indices(epoch)).to(self.device)
        flips = self._alternating_flips(epoch)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self._gather(idx)
            if self.augment:
                x = self.augment.mix(self.augment.crop_flip(x, gen, None if flips is None else flips[idx]), gen)
            x = self.normalization.apply(x)
            if self.augment:
                x = self.augment.random_erase(self.augment.affine(x, gen), gen)
            yield x, self.labels[idx]
