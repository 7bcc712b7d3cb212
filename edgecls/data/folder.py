"""A user's own images: ROOT/train/<class>/*.jpg|png and ROOT/test/<class>/*, decoded with OpenCV.

Images are sized by the runtime's own policy (`fit_image`: centre square, area reduction), so training
sees the geometry the deployed model will see. Decoded images go once into a uint8 array on disk
(`$EDGECLS_CACHE/folders`, keyed by every file's path, size and mtime and the target size), opened as a
memory map: a folder larger than memory streams from disk, and the second run skips decoding.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

from edgecls.data.imageset import ImageSet
from edgecls.errors import DatasetError
from edgecls.fileio import atomic_npy, cache_dir
from edgecls.runtime.preprocess import POLICY, fit_image
from edgecls.runtime.sources import IMAGE_SUFFIXES


def _listing(split_dir: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    classes = tuple(sorted(p.name for p in split_dir.iterdir() if p.is_dir()))
    if len(classes) < 2:
        raise DatasetError(f"{split_dir} must hold at least two class folders, found {list(classes)}")
    files = [(path, label) for label, name in enumerate(classes) for path in sorted((split_dir / name).iterdir())
             if path.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise DatasetError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {split_dir}")
    return classes, files


def _decode(path: Path, grey: bool) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"cannot decode image {path}; delete or replace it")
    return image[..., None] if grey else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _size_of(files: list[tuple[Path, int]], grey: bool, split_dir: Path) -> int:
    """Without --image-size, every image must already be the same square size."""
    first = _decode(files[0][0], grey)
    for path, _ in files[1:]:
        shape = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2]
        if shape != first.shape[:2]:
            raise DatasetError(f"{split_dir}: images differ in size ({first.shape[:2]} vs {shape} at {path.name}); pass "
                               "--image-size N to centre-crop and resize them all, as the runtime does to camera frames")
    if first.shape[0] != first.shape[1]:
        raise DatasetError(f"{split_dir}: images are {first.shape[1]}×{first.shape[0]}, not square; pass --image-size N "
                           "to centre-crop them, as the runtime does to camera frames")
    return first.shape[0]


def load_unlabelled_images(folder: str | Path, size: int, channels: int, crop_fraction: float = 1.0) -> np.ndarray:
    """Every image under `folder` (sorted, recursively), fitted as the runtime fits a frame: uint8 N×size×size×channels."""
    from edgecls.runtime.preprocess import fit_to_input

    root = Path(folder)
    if not root.is_dir():
        raise DatasetError(f"--calib-dir {root} is not a directory of images")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise DatasetError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    images = np.empty((len(paths), size, size, channels), dtype=np.uint8)
    for i, path in enumerate(paths):
        images[i] = fit_to_input(_decode(path, grey=False), size, channels, crop_fraction)
    return images


def load_image_folder(root: Path, split: str, image_size: int | None = None, grey: bool = False,
                      crop_fraction: float = 1.0) -> ImageSet:
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir} not found: an image folder dataset needs ROOT/train/<class>/* and ROOT/test/<class>/*")
    if image_size is not None and image_size < 1:
        raise DatasetError(f"--image-size must be ≥ 1, got {image_size}")
    classes, files = _listing(split_dir)
    channels = 1 if grey else 3
    key = hashlib.sha256(json.dumps([str(split_dir.resolve()), image_size, channels, POLICY, crop_fraction,
                                     [(str(p.relative_to(split_dir)), p.stat().st_size, p.stat().st_mtime_ns) for p, _ in files]])
                         .encode()).hexdigest()[:24]
    cached = cache_dir("folders") / f"{key}.npy"
    if not cached.is_file():
        size = image_size or _size_of(files, grey, split_dir)
        with atomic_npy(cached, (len(files), size, size, channels)) as out:
            for i, (path, _) in enumerate(files):
                out[i] = fit_image(_decode(path, grey), size, crop_fraction).reshape(size, size, channels)
    images = np.load(cached, mmap_mode="r")
    labels = np.asarray([label for _, label in files], dtype=np.int64)
    return ImageSet(f"{root.name}-{split}", images, labels, classes, tuple(str(p) for p, _ in files))
