"""The image contract: the one definition of how an image reaches a model, from a camera frame or a dataset.

It sits on the ground floor (numpy, OpenCV, no other edgecls module) because every floor above keeps to it:
bundles record it, datasets are sized by it, training and export record and check it, the runtime applies it.

Policy: centre-crop to the model's aspect (square) — or to a centred fraction of it, `crop_fraction`, which
is how ImageNet-style models are fed ("resize the shorter side to 256, centre-crop 224" is the centred
224/256 = 0.875 of the short side) — reduce with area averaging to the model's size, convert grey ↔ colour
and reorder colour, normalize `(pixel - mean) / std` with mean and std in pixel units (0–255), and lay out
as N×C×H×W float32. Datasets are sized by `fit_image` (the same crop, reduction and channel conversion)
before training or evaluation sees them; training's evaluation, export's accuracy gate, `edgecls eval`, replay
and the runtime all normalize through `edgecls.runtime.preprocess.Preprocessor`. The policy is recorded in
checkpoints and manifests as {"crop": "center", "resize": "area"} plus `crop_fraction` when it is not 1.

The reduction is the hot part: `cv2.resize(..., INTER_AREA)` on a whole 640×480 frame reads every pixel
(~0.2 ms on a small CPU). When the frame is much larger than the model input, only every k-th row,
centred in its band, is read, keeping at least `MIN_ROWS_PER_OUTPUT` rows under each output pixel;
columns are all read, so the result stays within a grey level or two of the full INTER_AREA result
(`tools/bench_preprocess.py` measures both speed and the difference).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from edgecls.errors import ConfigError, InputError
from edgecls.jsonrecord import choices, doc, read_record, to_json
from edgecls.names import COLORS, NORMALIZATIONS

MIN_ROWS_PER_OUTPUT = 5
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
CROPS = ("center",)
RESIZES = ("area",)
# torchvision's convention (pixels scaled to 0–1) for ImageNet; a bundle records them × 255
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ImageInput:
    """What a model takes: size×size pixels with 1 or 3 channels, a 3-channel input in `color` order."""

    size: int = field(metadata=doc("side of the square input, pixels"))
    channels: int = field(metadata=choices((1, 3)))
    color: str = field(default="rgb", metadata=choices(COLORS, "channel order of a 3-channel input"))


class ModelImage(Protocol):
    """The image a model takes: an `ImageInput`, or the manifest's `InputSpec` (which adds the graph's names)."""

    size: int
    channels: int
    color: str


@dataclass(frozen=True)
class Normalization:
    """Per-channel `(pixel - mean) / std`, with mean and std in pixel units (0–255)."""

    kind: str = field(metadata=doc("how mean and std were chosen: zscore, minmax (fitted), imagenet or given"))
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, images: np.ndarray, kind: str = "zscore") -> Normalization:
        if kind not in NORMALIZATIONS:
            raise ConfigError(f"normalization must be one of {NORMALIZATIONS}, got {kind!r}")
        channels = images.shape[-1]
        if kind == "minmax":
            return cls(kind, (0.0,) * channels, (255.0,) * channels)
        flat = images.reshape(-1, channels)
        sample = flat[:: max(1, len(flat) // 2_000_000)].astype(np.float64)
        return cls(kind, tuple(float(v) for v in sample.mean(0)), tuple(float(v) for v in sample.std(0)))

    def to_dict(self) -> dict:
        return to_json(self)

    @classmethod
    def from_dict(cls, record: dict) -> Normalization:
        return read_record(cls, record, ValueError, "normalization")

    def apply(self, batch_uint8: Any) -> Any:
        """N×C×H×W uint8 torch tensor → normalized float32 (by the tensor's own methods: no torch import here)."""
        x = batch_uint8.float()
        mean = x.new_tensor(self.mean).view(1, -1, 1, 1)
        inv_std = 1.0 / x.new_tensor(self.std).view(1, -1, 1, 1)
        return (x - mean) * inv_std


@dataclass(frozen=True)
class Policy:
    """How an image reaches the model after it is sized: the centre crop (`crop_fraction` of the short side), area
    reduction and normalization. Recorded in checkpoints and in the manifest's `preprocess` section."""

    normalization: Normalization
    crop: str = field(default="center", metadata=choices(CROPS))
    resize: str = field(default="area", metadata=choices(RESIZES))
    crop_fraction: float = field(default=1.0, metadata=doc("centred fraction of the short side the model sees"))

    def geometry(self) -> dict:
        """The crop and reduction without the normalization: a checkpoint's `preprocess` entry."""
        return {"crop": self.crop, "resize": self.resize, "crop_fraction": self.crop_fraction}


def center_box(height: int, width: int, crop_fraction: float = 1.0) -> tuple[int, int, int]:
    """(top, left, side) of the centred square the model looks at: `crop_fraction` of the short side."""
    side = max(1, round(min(height, width) * crop_fraction))
    return (height - side) // 2, (width - side) // 2, side


def center_square(frame: np.ndarray, crop_fraction: float = 1.0) -> np.ndarray:
    top, left, side = center_box(*frame.shape[:2], crop_fraction)
    return frame[top : top + side, left : left + side]


def row_step(height: int, size: int) -> int:
    """Read every `row_step`-th row when reducing `height` rows to `size`.

    When `height` is a whole multiple k of `size` the step divides k, so every output row averages rows of
    its own band only: a frame made by enlarging a size×size image k times (nearest neighbour) comes back
    exactly. That is what makes test-set replay score what `edgecls eval` scores.
    """
    step = max(1, height // (size * MIN_ROWS_PER_OUTPUT))
    if height % size == 0:
        k = height // size
        step = max(d for d in range(1, step + 1) if k % d == 0)
    return step


def area_resize(image: np.ndarray, size: int) -> np.ndarray:
    """Area-average `image` down (or up) to size×size, skipping rows where that costs no accuracy."""
    h = image.shape[0]
    if image.shape[0] == size and image.shape[1] == size:
        return image
    step = row_step(h, size)
    if step > 1:
        image = image[step // 2 :: step]
    interpolation = cv2.INTER_AREA if h >= size else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def fit_image(image: np.ndarray, size: int, crop_fraction: float = 1.0) -> np.ndarray:
    """Any-sized image → size×size by the policy's crop and reduction (what the runtime does to a frame)."""
    return area_resize(center_square(image, crop_fraction), size)


def convert_channels(image: np.ndarray, channels: int, color: str = "rgb") -> np.ndarray:
    """H×W×C uint8 (C 1, 3 or 4, in `color` order) → H×W×`channels`: grey repeated to three channels, colour to
    grey by OpenCV's luma weights. A grey image repeated and converted back is the same image, exactly."""
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 4:
        image = image[..., :3]
    if channels == 1 and image.shape[2] == 3:
        code = cv2.COLOR_BGR2GRAY if color == "bgr" else cv2.COLOR_RGB2GRAY
        return cv2.cvtColor(np.ascontiguousarray(image), code)[..., None]
    if channels == 3 and image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return image


def check_frame(frame) -> np.ndarray:
    if not isinstance(frame, np.ndarray):
        raise InputError(f"a frame must be a numpy array (an OpenCV image), got {type(frame).__name__}")
    if frame.size == 0:
        raise InputError("empty frame (0 pixels): the camera returned nothing; check the source before predicting")
    if frame.ndim == 3 and frame.shape[2] == 1:
        frame = frame[..., 0]
    if frame.ndim not in (2, 3) or (frame.ndim == 3 and frame.shape[2] not in (3, 4)):
        raise InputError(f"a frame must be H×W (grey), H×W×3 or H×W×4, got shape {frame.shape}")
    if frame.dtype != np.uint8:
        if frame.dtype.kind == "f" and not np.isfinite(frame).all():
            raise InputError("frame contains NaN or infinite values; pass uint8 pixels (0–255)")
        raise InputError(
            f"frame dtype must be uint8 (0–255 pixels), got {frame.dtype}; convert with "
            "np.clip(frame, 0, 255).astype(np.uint8) if it holds pixel values"
        )
    return frame


def fit_to_input(
    image: np.ndarray, size: int, channels: int, crop_fraction: float = 1.0, color: str = "rgb"
) -> np.ndarray:
    """Any image → size×size×channels uint8 by the policy's crop, reduction and channel conversion (colour order
    kept)."""
    return convert_channels(fit_image(image, size, crop_fraction), channels, color).reshape(size, size, channels)


def fit_dataset(images: np.ndarray, size: int, channels: int, crop_fraction: float = 1.0) -> np.ndarray:
    """A dataset's uint8 N×H×W×C RGB (or grey) images → the model's size, crop and channel count, still RGB: each
    image as the runtime fits a frame. The identity (the same array, e.g. a memory map) when they already match."""
    if images.shape[1:] == (size, size, channels) and crop_fraction == 1.0:
        return images
    out = np.empty((len(images), size, size, channels), dtype=np.uint8)
    for i, image in enumerate(images):
        out[i] = fit_to_input(image, size, channels, crop_fraction)
    return out
