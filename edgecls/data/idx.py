"""MNIST and Fashion-MNIST from their IDX files (`*-idx3-ubyte.gz`, `*-idx1-ubyte.gz`)."""

from __future__ import annotations

import gzip
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


def read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DatasetError(f"{path} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">u4", count=ndim, offset=4).astype(np.int64)
    expected = int(np.prod(dims))
    payload = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if payload.size != expected:
        raise DatasetError(f"{path}: header promises {expected} bytes, file holds {payload.size} (truncated?)")
    return payload.reshape(tuple(dims)).copy()  # frombuffer views are read-only


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
