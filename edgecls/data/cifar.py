"""CIFAR-10 and CIFAR-100 from the official python batch format, loaded with the restricted unpickler."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecls.data.imageset import ImageSet
from edgecls.data.locate import find_first
from edgecls.data.safe_pickle import safe_load
from edgecls.errors import DatasetError

_HINT = (
    "Expected the official python version ({folder}/ with {files}). Download {archive} from "
    "https://www.cs.toronto.edu/~kriz/cifar.html (or torchvision.datasets.{tv}(root, download=True)) and "
    "extract it into the data directory."
)


def _read(path: Path) -> dict:
    if not path.is_file():
        raise DatasetError(f"missing CIFAR batch {path}")
    batch = safe_load(path.read_bytes(), name=str(path))
    if not isinstance(batch, dict):
        raise DatasetError(f"{path} does not hold a CIFAR batch dict")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _images(batch: dict, path: Path) -> np.ndarray:
    data = np.asarray(batch.get("data"), dtype=np.uint8)
    if data.ndim != 2 or data.shape[1] != 3072:
        raise DatasetError(f"{path}: 'data' must be N×3072 uint8 (channel-major 32×32 RGB), got {data.shape}")
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _names(values) -> tuple[str, ...]:
    return tuple(v.decode() if isinstance(v, bytes) else str(v) for v in values)


_CIFAR10_HINT = _HINT.format(
    folder="cifar-10-batches-py",
    files="data_batch_1…5, test_batch, batches.meta",
    archive="cifar-10-python.tar.gz",
    tv="CIFAR10",
)


def load_cifar10(root: Path, split: str) -> ImageSet:
    folder = find_first(root, ["cifar-10-batches-py", "."], _CIFAR10_HINT)
    if not (folder / "batches.meta").is_file():
        raise DatasetError(f"{folder / 'batches.meta'} not found. {_CIFAR10_HINT}")
    names = ["test_batch"] if split == "test" else [f"data_batch_{i}" for i in range(1, 6)]
    batches = [(folder / n, _read(folder / n)) for n in names]
    images = np.concatenate([_images(b, p) for p, b in batches])
    labels = np.concatenate([np.asarray(b["labels"], dtype=np.int64) for _, b in batches])
    classes = _names(_read(folder / "batches.meta")["label_names"])
    return ImageSet(f"cifar10-{split}", images, labels, classes)


def load_cifar100(root: Path, split: str, label_kind: str = "fine") -> ImageSet:
    if label_kind not in ("fine", "coarse"):
        raise DatasetError(f"CIFAR-100 labels are 'fine' or 'coarse', not {label_kind!r}")
    folder = find_first(
        root,
        ["cifar-100-python", "."],
        _HINT.format(
            folder="cifar-100-python", files="train, test, meta", archive="cifar-100-python.tar.gz", tv="CIFAR100"
        ),
    )
    path = folder / ("test" if split == "test" else "train")
    batch = _read(path)
    classes = _names(_read(folder / "meta")[f"{label_kind}_label_names"])
    labels = np.asarray(batch[f"{label_kind}_labels"], dtype=np.int64)
    return ImageSet(f"cifar100-{label_kind}-{split}", _images(batch, path), labels, classes)
