"""The feature distance an export ships for "unknown" (`edgecls.feature_distance`): fitted once on training images'
features from model.onnx (validation excluded), then standardized and thresholded per graph on that graph's own
validation features, as each graph answers on the target."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgecls.confidence import RETENTION, threshold_for
from edgecls.console import console
from edgecls.data.imageset import ImageSet
from edgecls.data.split import balanced_subset
from edgecls.export.onnx_export import FEATURES_NAME
from edgecls.export.scoring import onnx_outputs, session
from edgecls.feature_distance import FIT_IMAGES, FeatureDistance, known_score, standardizer
from edgecls.runtime.preprocess import Preprocessor


def fit_feature_distance(
    fp32: Path, train: ImageSet, prep: Preprocessor, widths: list[int], seed: int
) -> FeatureDistance:
    """Class means and covariances of each block, on up to `FIT_IMAGES` class-balanced training images; what is
    fitted is what the bundle stores (float32), so export scores the graphs with the runtime's numbers."""
    fit = train.take(balanced_subset(train.labels, min(FIT_IMAGES, len(train)), seed=seed))
    (features,) = onnx_outputs(session(fp32), fit.images, prep, [FEATURES_NAME])
    distance = FeatureDistance.fit(features, fit.labels, tuple(widths))
    console.print(
        f"  unknown: feature distance of {len(widths)} blocks ({sum(widths)} channel means) fitted on {len(fit)} "
        "training images (model.onnx)"
    )
    return FeatureDistance.from_bytes(distance.to_bytes())


def feature_record(validation: np.ndarray, test: np.ndarray | None) -> dict:
    """One graph's standardization and threshold from its validation distances, with the share of test images
    it calls unknown (reported only)."""
    standardize = standardizer(validation)
    below = threshold_for(known_score(validation, standardize), RETENTION)
    record = {"standardize": standardize, "unknown_below": below}
    if test is not None:
        record["test_called_unknown"] = float(np.mean(known_score(test, standardize) < below))
    return record
