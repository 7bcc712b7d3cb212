"""Calibration data: a class-stratified sample of *training* images, fed to ONNX Runtime in batches."""

from __future__ import annotations

import numpy as np

from edgecls.data.imageset import ImageSet
from edgecls.data.split import balanced_subset
from edgecls.errors import ConfigError


def calibration_images(train: ImageSet, n: int, seed: int = 0) -> ImageSet:
    """`n` training images, the same number per class. Test images never enter calibration."""
    if n < len(train.classes):
        raise ConfigError(f"--calib-images must be at least the number of classes ({len(train.classes)}), got {n}")
    return train.take(balanced_subset(train.labels, min(n, len(train)), seed), name=f"{train.name}[calib {n}]")


class ArrayCalibrationReader:
    """An `onnxruntime.quantization.CalibrationDataReader` over a normalized N×C×H×W float32 array."""

    def __init__(self, batch: np.ndarray, input_name: str, batch_size: int = 64):
        if len(batch) == 0:
            raise ConfigError("calibration set is empty: nothing to compute activation ranges from")
        self.batch, self.input_name, self.batch_size = batch, input_name, batch_size
        self.rewind()

    def get_next(self) -> dict | None:
        return next(self._iter, None)

    def rewind(self) -> None:
        self._iter = (
            {self.input_name: self.batch[i : i + self.batch_size]} for i in range(0, len(self.batch), self.batch_size)
        )
