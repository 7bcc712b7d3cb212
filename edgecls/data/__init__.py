"""Datasets held in memory as uint8 images, and the batches, augmentation and normalization training uses."""

from edgecls.data.datasets import DATASETS, load_dataset, load_for_model
from edgecls.data.imageset import ImageSet

__all__ = ["DATASETS", "ImageSet", "load_dataset", "load_for_model"]
