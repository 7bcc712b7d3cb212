"""A user's own images: ROOT/train/<class>/*.jpg|png and ROOT/test/<class>/*, decoded with OpenCV."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from edgecls.data.imageset import ImageSet
from edgecls.errors import DatasetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def load_image_folder(root: Path, split: str, image_size: int | None = None, grey: bool = False) -> ImageSet:
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(f"{split_dir} not found: an image folder dataset needs ROOT/train/<class>/* and ROOT/test/<class>/*")
    classes = tuple(sorted(p.name for p in split_dir.iterdir() if p.is_dir()))
    if len(classes) < 2:
        raise DatasetError(f"{split_dir} must hold at least two class folders, found {list(classes)}")
    images, labels = [], []
    flag = cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR
    for label, name in enumerate(classes):
        for path in sorted((split_dir / name).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            image = cv2.imread(str(path), flag)
            if image is None:
                raise DatasetError(f"cannot decode image {path}; delete or replace it")
            if image_size:
                image = cv2.resize(image, (image_size, image_size), interpolation=cv2.INTER_AREA)
            image = image[..., None] if grey else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            images.append(image)
            labels.append(label)
    if not images:
        raise DatasetError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {split_dir}")
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise DatasetError(f"{split_dir}: images differ in size ({sorted(shapes)[:3]}…); pass --image-size N to resize them")
    return ImageSet(f"{root.name}-{split}", np.stack(images), np.asarray(labels, dtype=np.int64), classes)
