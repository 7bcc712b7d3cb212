"""`Preprocessor`: the image contract (`edgecls.imaging`) applied to camera frames and datasets, as N×C×H×W float32.

Built once from a manifest's input and preprocess sections; training's evaluation, export's accuracy gate,
`edgecls eval`, replay and the runtime all normalize through it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edgecls.errors import InputError
from edgecls.imaging import COLORS, ModelImage, Policy, check_frame, fit_to_input


class Preprocessor:
    """Built once from the manifest; `__call__` turns one frame into a 1×C×H×W float32 tensor."""

    def __init__(self, image: ModelImage, policy: Policy):
        self.size, self.channels, self.model_color = image.size, image.channels, image.color
        self.crop_fraction = policy.crop_fraction
        self.mean = np.asarray(policy.normalization.mean, dtype=np.float32)
        self.inv_std = (1.0 / np.asarray(policy.normalization.std, dtype=np.float32)).astype(np.float32)

    def __call__(self, frame: np.ndarray, color: str = "bgr") -> np.ndarray:
        return self.to_hwc(frame, color).transpose(2, 0, 1)[None]

    def fit(self, frame: np.ndarray, color: str = "bgr") -> np.ndarray:
        """One frame → size×size×channels uint8 in the model's colour order: the geometry and colour the model sees."""
        if color not in COLORS:
            raise InputError(f"color must be one of {COLORS}, got {color!r}")
        small = fit_to_input(check_frame(frame), self.size, self.channels, self.crop_fraction, color)
        if self.channels == 3 and color != self.model_color:
            small = small[..., ::-1]
        return small

    def to_hwc(self, frame: np.ndarray, color: str = "bgr") -> np.ndarray:
        return (self.fit(frame, color).astype(np.float32) - self.mean) * self.inv_std

    def batches(self, images: np.ndarray, size: int = 500) -> Iterator[np.ndarray]:
        """`batch_from_images` over consecutive chunks of `size` images."""
        for start in range(0, len(images), size):
            yield self.batch_from_images(images[start : start + size])

    def batch_from_images(self, images: np.ndarray) -> np.ndarray:
        """Already-fitted uint8 N×H×W×C RGB (or grey) images (a dataset through `fit_dataset`) → N×C×H×W float32."""
        if images.shape[1:3] != (self.size, self.size) or images.shape[3] != self.channels:
            raise InputError(
                f"images of shape {images.shape[1:]} do not match the model's input "
                f"{self.size}×{self.size}×{self.channels}; load the dataset with load_for_model"
            )
        if self.channels == 3 and self.model_color == "bgr":
            images = images[..., ::-1]
        return ((images.astype(np.float32) - self.mean) * self.inv_std).transpose(0, 3, 1, 2).copy()
