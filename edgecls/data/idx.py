"""MNIST and Fashion-MNIST from their IDX files (`*-idx3-ubyte.gz`, `*-idx1-ubyte.gz`)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from edgecls.data.imageset import ImageSet
from edgecls.data.locate import find_first
from edgecls.errors import DatasetError

MNIST_CLASSES = tuple(str(i) for i in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_PREFIX = {"train": "train", "test": "t10k"}


MAX_IDX_BYTES = 1 << 30  # EMNIST ByClass, the largest IDX set in use, holds 0.55 GB of images


def read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX array. Its header's dimensions are checked before the payload is read: against
    MAX_IDX_BYTES, and against the bytes the file holds (a .gz file records its uncompressed size, mod 2^32, in its
    last four bytes), so a 4 MB file declaring a million images is refused without reading it; the payload is then
    read to exactly that size. A damaged or truncated .gz is a DatasetError, not a zlib traceback."""
    compressed = path.suffix == ".gz"
    try:
        with (gzip.open if compressed else open)(path, "rb") as f:
            head = f.read(4)
            if len(head) < 4 or head[:3] != b"\x00\x00\x08" or not 1 <= head[3] <= 4:
                raise DatasetError(f"{path} is not an unsigned-byte IDX file")
            dims = np.frombuffer(f.read(4 * head[3]), dtype=">u4").astype(np.int64)
            expected = int(np.prod(dims)) if len(dims) == head[3] else -1
            if not 0 <= expected <= MAX_IDX_BYTES:
                raise DatasetError(
                    f"{path}: the header declares dimensions {dims.tolist()}, beyond what edgecls reads "
                    f"({MAX_IDX_BYTES >> 20} MiB); the file is damaged or not a dataset"
                )
            total, recorded = 4 + 4 * head[3] + expected, _stored_bytes(path, compressed)
            if recorded != (total % (1 << 32) if compressed else total):
                raise DatasetError(
                    f"{path}: header promises {expected} bytes, file holds {recorded - total + expected} (truncated?)"
                )
            payload = f.read(expected)
    except (EOFError, OSError, zlib.error) as exc:
        raise DatasetError(f"{path} is damaged or truncated ({exc}); download it again") from None
    if len(payload) != expected:
        raise DatasetError(f"{path}: header promises {expected} bytes, file holds {len(payload)} (truncated?)")
    return np.frombuffer(payload, dtype=np.uint8).reshape(tuple(dims)).copy()  # frombuffer views are read-only


def _stored_bytes(path: Path, compressed: bool) -> int:
    """The file's size, or for gzip the uncompressed size its trailer records (mod 2^32)."""
    if not compressed:
        return path.stat().st_size
    with open(path, "rb") as f:
        f.seek(-4, os.SEEK_END)
        return int.from_bytes(f.read(4), "little")


def load_idx_dataset(root: Path, split: str, kind: str) -> ImageSet:
    folder_names = (
        ["fashion-mnist", "fashion_mnist", "FashionMNIST/raw", "."]
        if kind == "fashion-mnist"
        else ["mnist", "MNIST/raw", "."]
    )
    hint = (
        "Expected train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
        f"t10k-labels-idx1-ubyte.gz. Get them with torchvision.datasets."
        f"{'FashionMNIST' if kind == 'fashion-mnist' else 'MNIST'}(root, download=True)"
        + (
            ", or on Debian `apt-get install dataset-fashion-mnist` and pass --data-dir /usr/share/datasets"
            if kind == "fashion-mnist"
            else ""
        )
    )
    prefix = _PREFIX["test" if split == "test" else "train"]
    image_file = f"{prefix}-images-idx3-ubyte"
    folder = None
    for name in folder_names:
        candidate = root / name
        if (candidate / f"{image_file}.gz").exists() or (candidate / image_file).exists():
            folder = candidate
            break
    if folder is None:
        raise DatasetError(f"no {kind} IDX files under {root}. {hint}")

    def pick(stem: str) -> Path:
        return find_first(folder, [f"{stem}.gz", stem], hint)

    images = read_idx(pick(image_file))
    labels = read_idx(pick(f"{prefix}-labels-idx1-ubyte")).astype(np.int64)
    classes = FASHION_CLASSES if kind == "fashion-mnist" else MNIST_CLASSES
    return ImageSet(f"{kind}-{split}", np.ascontiguousarray(images[..., None]), labels, classes)
