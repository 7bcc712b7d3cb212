"""A user's own images: ROOT/train/<class>/*.jpg|png and ROOT/test/<class>/*, decoded with OpenCV.

Images are sized by the runtime's own policy (`fit_image`: centre square, area reduction), so training
sees the geometry the deployed model will see. Decoded images go once into a uint8 array on disk
(`$EDGECLS_CACHE/folders`, keyed by every file's path, size and mtime and the target size), opened as a
memory map: a folder larger than memory streams from disk, and the second run skips decoding.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import cv2
import numpy as np

from edgecls.data.image_header import too_large
from edgecls.data.imageset import ImageSet
from edgecls.errors import DatasetError
from edgecls.fileio import atomic_npy, atomic_write_json, cache_dir
from edgecls.imaging import CROPS, IMAGE_SUFFIXES, RESIZES, fit_image, fit_to_input


def _class_folders(split_dir: Path) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in split_dir.iterdir() if p.is_dir()))


def _listing(split_dir: Path, classes: tuple[str, ...]) -> list[tuple[Path, int]]:
    """Image files and their labels: the index of their folder's name in `classes` (the training split's list)."""
    found = _class_folders(split_dir)
    extra = sorted(set(found) - set(classes))
    if extra:
        raise DatasetError(
            f"{split_dir} has class folders the training split lacks: {extra[:10]}; a model trained on "
            f"{split_dir.parent / 'train'} cannot answer them. Rename or remove them, or add them to train/"
        )
    files, empty = [], []
    for name in found:
        images = [p for p in sorted((split_dir / name).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
        if not images:
            empty.append(name)
        files.extend((path, classes.index(name)) for path in images)
    if empty:
        raise DatasetError(
            f"class folder(s) {empty[:10]} under {split_dir} hold no images "
            f"({', '.join(sorted(IMAGE_SUFFIXES))}): add images or remove the folder(s)"
        )
    return files


def _fingerprint(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:  # a dangling link or a link loop: reported with the undecodable files
        return None
    return st.st_size, st.st_mtime_ns


def _read(path: Path, grey: bool) -> np.ndarray:
    """One image, decoded from bytes read once. OpenCV decodes a cut-off JPEG or PNG into a partly grey image with only
    a warning on stderr, so the end of the file is checked: a JPEG's EOI marker, a PNG's IEND chunk. Errors carry
    the reason only; callers name the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot be read ({exc.strerror})") from None
    suffix, tail = path.suffix.lower(), data[-1024:]
    if (suffix in (".jpg", ".jpeg") and b"\xff\xd9" not in tail) or (suffix == ".png" and b"IEND" not in tail[-32:]):
        raise DatasetError(f"truncated (the {suffix[1:].upper()} file has no end marker)")
    refused = too_large(data)
    if refused:
        raise DatasetError(refused)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE if grey else cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError("OpenCV cannot decode it")
    return image[..., None] if grey else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _decode(path: Path, grey: bool) -> np.ndarray:
    try:
        return _read(path, grey)
    except DatasetError as exc:
        raise DatasetError(f"{path}: {exc}; delete or replace it") from None


def _native_size(image: np.ndarray, path: Path, split_dir: Path, size: int | None) -> int:
    """Without --image-size, every image must already be the same square size."""
    height, width = image.shape[:2]
    if height != width:
        raise DatasetError(
            f"{split_dir}: {path.name} is {width}×{height}, not square; pass --image-size N to "
            "centre-crop them, as the runtime does to camera frames"
        )
    if size is not None and height != size:
        raise DatasetError(
            f"{split_dir}: images differ in size ({size}×{size} vs {width}×{height} at {path.name}); pass "
            "--image-size N to centre-crop and resize them all, as the runtime does to camera frames"
        )
    return height


def load_unlabelled_images(folder: str | Path, size: int, channels: int, crop_fraction: float = 1.0) -> np.ndarray:
    """Every image under `folder` (sorted, recursively), fitted as the runtime fits a frame: uint8
    N×size×size×channels."""
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


def load_image_folder(
    root: Path,
    split: str,
    image_size: int | None = None,
    grey: bool = False,
    crop_fraction: float = 1.0,
    skip_bad_images: bool = False,
) -> ImageSet:
    """ROOT/`split`, labelled by the training split's class folders (matched by name). Empty or unknown class folders
    are errors; so are unreadable, undecodable and truncated images, unless `skip_bad_images`, which leaves them out
    and names them."""
    split_dir = root / split
    if not split_dir.is_dir():
        raise DatasetError(
            f"{split_dir} not found: an image folder dataset needs ROOT/train/<class>/* and ROOT/test/<class>/*"
        )
    if not (root / "train").is_dir():
        raise DatasetError(
            f"{root / 'train'} not found: the class list of an image folder dataset is its training "
            "split's folder names (ROOT/train/<class>/*)"
        )
    if image_size is not None and image_size < 1:
        raise DatasetError(f"--image-size must be ≥ 1, got {image_size}")
    classes = _class_folders(root / "train")
    if len(classes) < 2:
        raise DatasetError(f"{root / 'train'} must hold at least two class folders, found {list(classes)}")
    files = _listing(split_dir, classes)
    channels = 1 if grey else 3
    stamps = [_fingerprint(p) for p, _ in files]
    key = hashlib.sha256(
        json.dumps(
            [
                "v2",
                str(split_dir.resolve()),
                image_size,
                channels,
                [CROPS, RESIZES],
                crop_fraction,
                [(str(p.relative_to(split_dir)), s) for (p, _), s in zip(files, stamps, strict=True)],
            ]
        ).encode()
    ).hexdigest()[:24]
    cached, bad_list = cache_dir("folders") / f"{key}.npy", cache_dir("folders") / f"{key}.bad.json"
    if not cached.is_file():
        _decode_into(cached, bad_list, files, image_size, grey, crop_fraction, split_dir)
    bad = json.loads(bad_list.read_text()) if bad_list.is_file() else {}
    if bad and not skip_bad_images:
        raise DatasetError(
            f"{len(bad)} image(s) under {split_dir} cannot be used: "
            + "; ".join(f"{name}: {why}" for name, why in list(bad.items())[:10])
            + ". Delete or replace them, or pass --skip-bad-images to leave them out"
        )
    images = np.load(cached, mmap_mode="r")
    labels = np.asarray([label for _, label in files], dtype=np.int64)
    data = ImageSet(f"{root.name}-{split}", images, labels, classes, tuple(str(p) for p, _ in files))
    if bad:
        warnings.warn(f"left out {len(bad)} bad image(s) under {split_dir}: {', '.join(list(bad)[:20])}", stacklevel=2)
        data = data.take(np.flatnonzero([str(p.relative_to(split_dir)) not in bad for p, _ in files]))
    return data


def _decode_into(
    cached: Path,
    bad_list: Path,
    files: list[tuple[Path, int]],
    image_size: int | None,
    grey: bool,
    crop_fraction: float,
    split_dir: Path,
) -> None:
    """Decode every file once into the cache's .npy; the bad ones (named, with the reason) go to a list beside it. The
    files before the first decodable one (whose size sizes the array without --image-size) are the first bad ones."""
    bad: dict[str, str] = {}
    images = iter(enumerate(files))
    for i, (path, _) in images:
        try:
            first = i, _read(path, grey)
            break
        except DatasetError as exc:
            bad[str(path.relative_to(split_dir))] = str(exc)
    else:
        raise DatasetError(f"no image under {split_dir} can be decoded ({len(bad)} tried)")
    size = image_size or _native_size(first[1], files[first[0]][0], split_dir, None)
    with atomic_npy(cached, (len(files), size, size, 1 if grey else 3)) as out:
        out[first[0]] = fit_image(first[1], size, crop_fraction).reshape(out.shape[1:])
        for i, (path, _) in images:
            try:
                image = _read(path, grey)
            except DatasetError as exc:
                bad[str(path.relative_to(split_dir))] = str(exc)
                continue
            if image_size is None:
                _native_size(image, path, split_dir, size)
            out[i] = fit_image(image, size, crop_fraction).reshape(out.shape[1:])
        atomic_write_json(bad_list, bad)
