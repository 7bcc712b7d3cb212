"""`ImageSet`: a labelled set of uint8 images held in memory, the one shape every loader returns."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecls.fileio import atomic_npy


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 N×H×W×C (C = 3 for RGB, 1 for grey), integer labels and class names.

    `images` may be a read-only memory map (image folders): indexing it reads only the rows asked for.
    `paths` names each image's source file where there is one (image folders).
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]
    paths: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[3] not in (1, 3):
            raise ValueError(
                f"{self.name}: images must be uint8 N×H×W×C with C in (1, 3), got {self.images.dtype} "
                f"{self.images.shape}"
            )
        if len(self.images) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise ValueError(f"{self.name}: labels outside 0..{len(self.classes) - 1}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[3])

    @property
    def input_size(self) -> int:
        return int(self.images.shape[1])

    def take(self, indices: np.ndarray, name: str | None = None) -> ImageSet:
        """The images at `indices`; a memory-mapped set gives a memory-mapped subset (written once beside it)."""
        indices = np.arange(len(self))[indices]
        paths = tuple(self.paths[i] for i in indices) if self.paths else None
        images = _memmap_subset(self.images, indices) if isinstance(self.images, np.memmap) else self.images[indices]
        return ImageSet(name or self.name, images, self.labels[indices], self.classes, paths)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))

    def require_classes(self, classes, model: str) -> None:
        """Refuse to measure `model` here unless its class names are this set's, in the same order."""
        if tuple(self.classes) == tuple(classes):
            return
        from edgecls.errors import DatasetError

        mismatch = (
            "in another order"
            if sorted(self.classes) == sorted(classes)
            else (
                f"model only: {sorted(set(classes) - set(self.classes))[:5]}, dataset only: "
                f"{sorted(set(self.classes) - set(classes))[:5]}"
            )
        )
        raise DatasetError(
            f"{model}'s classes and {self.name}'s differ ({mismatch}); accuracy would be measured against "
            "the wrong names. Use the dataset the model was trained on, or labels in its output order"
        )


def _memmap_subset(images: np.memmap, indices: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Rows of a .npy memory map copied, chunk by chunk, into another .npy beside it (reused when it exists)."""
    source = Path(images.filename)
    key = hashlib.sha256(indices.astype(np.int64).tobytes()).hexdigest()[:16]
    path = source.with_name(f"{source.stem}.{key}.npy")
    if not path.is_file():
        with atomic_npy(path, (len(indices), *images.shape[1:]), images.dtype) as out:
            for start in range(0, len(indices), chunk):
                out[start : start + chunk] = images[indices[start : start + chunk]]
    return np.load(path, mmap_mode="r")
