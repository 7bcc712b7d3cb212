"""`load_dataset(name, split)`: one entry point for every supported dataset format."""

from __future__ import annotations

import difflib
import os
from dataclasses import replace
from pathlib import Path

from edgecls.data.cifar import load_cifar10, load_cifar100
from edgecls.data.folder import load_image_folder
from edgecls.data.idx import load_idx_dataset
from edgecls.data.imageset import ImageSet
from edgecls.data.locate import data_root
from edgecls.errors import ConfigError
from edgecls.imaging import ModelImage, Policy, fit_dataset
from edgecls.names import DATASETS

SPLITS = ("train", "test")


def load_dataset(
    name: str,
    split: str,
    data_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
    crop_fraction: float = 1.0,
    skip_bad_images: bool = False,
) -> ImageSet:
    """Load `split` of `name`. For `folder`, `data_dir` is the dataset root itself (ROOT/train, ROOT/test), and
    `skip_bad_images` leaves out (and names) the files that cannot be decoded instead of failing."""
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {SPLITS}, got {split!r}")
    if name not in DATASETS:
        close = difflib.get_close_matches(name, DATASETS, n=2)
        raise ConfigError(
            f"unknown dataset {name!r}."
            + (f" Did you mean {' or '.join(close)}?" if close else "")
            + f" Known: {', '.join(DATASETS)}."
        )
    root = data_root(data_dir)
    if name == "cifar10":
        return load_cifar10(root, split)
    if name in ("cifar100", "cifar100-coarse"):
        return load_cifar100(root, split, "coarse" if name.endswith("coarse") else "fine")
    if name in ("mnist", "fashion-mnist"):
        return load_idx_dataset(root, split, name)
    return load_image_folder(
        Path(root), split, image_size=image_size, crop_fraction=crop_fraction, skip_bad_images=skip_bad_images
    )


def load_for_model(
    dataset: str,
    split: str,
    data_dir: str | os.PathLike | None,
    image: ModelImage,
    policy: Policy | None = None,
    skip_bad_images: bool = False,
) -> ImageSet:
    """`split` as a model taking `image` under `policy` sees it: every image through the runtime's own crop,
    reduction and channel conversion (`imaging.fit_dataset`), so a model is trained, evaluated, gated, benched and
    replayed on what it sees from a camera. Image folders are fitted from their original files."""
    size, crop_fraction = image.size, policy.crop_fraction if policy else 1.0
    if dataset == "folder":
        data = load_dataset(
            dataset, split, data_dir, image_size=size, crop_fraction=crop_fraction, skip_bad_images=skip_bad_images
        )
    else:
        data = load_dataset(dataset, split, data_dir)
    images = fit_dataset(data.images, size, image.channels, crop_fraction)
    return data if images is data.images else replace(data, images=images)
