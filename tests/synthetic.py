"""Tiny synthetic datasets written in the real on-disk formats (CIFAR python batches, IDX, image folders).

Each class has its own colour and stripe pattern plus noise, so a small network learns it in a few epochs.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import cv2
import numpy as np

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_images(
    n: int, num_classes: int = 10, size: int = 32, channels: int = 3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    yy, xx = np.mgrid[0:size, 0:size]
    images = np.empty((n, size, size, channels), dtype=np.uint8)
    for i, c in enumerate(labels):
        base = np.array([(37 * c) % 256, (91 * c + 60) % 256, (151 * c + 120) % 256][:channels], dtype=np.float32)
        stripes = 60 * np.sin((xx * (c % 5 + 1) + yy * (c // 5)) * 0.5)[..., None]
        img = base + stripes + rng.normal(0, 20, (size, size, channels))
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)


def _cifar_dict(images: np.ndarray, labels: np.ndarray, label_key: str = "labels", extra: dict | None = None) -> dict:
    data = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    d = {
        b"batch_label": b"synthetic",
        label_key.encode(): labels.tolist(),
        b"data": data,
        b"filenames": [f"{i}.png".encode() for i in range(len(labels))],
    }
    d.update(extra or {})
    return d


def write_cifar10(root: Path, per_batch: int = 100, test: int = 200) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for b in range(1, 6):
        images, labels = make_images(per_batch, seed=b)
        (folder / f"data_batch_{b}").write_bytes(pickle.dumps(_cifar_dict(images, labels)))
    images, labels = make_images(test, seed=99)
    (folder / "test_batch").write_bytes(pickle.dumps(_cifar_dict(images, labels)))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [c.encode() for c in CLASSES]}))
    return root


def write_cifar100(root: Path, n_train: int = 200, n_test: int = 100) -> Path:
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", n_train, 1), ("test", n_test, 2)):
        images, fine = make_images(n, num_classes=100, seed=seed)
        (folder / name).write_bytes(
            pickle.dumps(_cifar_dict(images, fine, "fine_labels", {b"coarse_labels": (fine // 5).tolist()}))
        )
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return root


def write_idx(root: Path, kind: str = "fashion-mnist", n_train: int = 200, n_test: int = 100) -> Path:
    folder = root / kind
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 1), ("t10k", n_test, 2)):
        images, labels = make_images(n, size=28, channels=1, seed=seed)
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, 28, 28) + images[..., 0].tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">BBBBI", 0, 0, 8, 1, n) + labels.astype(np.uint8).tobytes())
    return root


def write_image_folder(root: Path, classes=("cat", "dog", "fish"), per_class: int = 6, size: int = 32) -> Path:
    for split, seed in (("train", 1), ("test", 2)):
        images, labels = make_images(per_class * len(classes), num_classes=len(classes), size=size, seed=seed)
        for i, (img, label) in enumerate(zip(images, labels, strict=True)):
            path = root / split / classes[label] / f"{i:04d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return root


def run_replay(clf, options):
    """`edgecls camera --replay-test-set` as the command line runs it: the test split loaded for the model, then the
    camera loop on it."""
    from edgecls.camera.loop import run_camera
    from edgecls.cli.deploy import replay_set

    return run_camera(clf, options, replay_set(options, clf.bundle))
