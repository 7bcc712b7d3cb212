"""Classical baselines on raw pixels: k-nearest neighbours and nearest centroid (scikit-learn).

kNN uses scikit-learn's brute-force search, which supports L1, L2 and cosine distance. Nearest centroid
is computed here with `pairwise_distances`, because scikit-learn's NearestCentroid does not accept the
cosine metric; centroids are class means (class medians for L1, as scikit-learn does).
"""

from __future__ import annotations

import numpy as np

from edgecls.console import progress
from edgecls.data.imageset import ImageSet
from edgecls.errors import ConfigError
from edgecls.metrics import classification_report
from edgecls.names import NORMALIZATIONS

METRICS = {"l1": "manhattan", "l2": "euclidean", "cosine": "cosine"}


def _features(train: ImageSet, test: ImageSet, normalization: str) -> tuple[np.ndarray, np.ndarray]:
    x_train = train.images.reshape(len(train), -1).astype(np.float32)
    x_test = test.images.reshape(len(test), -1).astype(np.float32)
    if normalization == "minmax":
        return x_train / 255.0, x_test / 255.0
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    return (x_train - mean) / std, (x_test - mean) / std


def _one_hot_scores(pred: np.ndarray, n: int) -> np.ndarray:
    scores = np.zeros((len(pred), n), dtype=np.float32)
    scores[np.arange(len(pred)), pred] = 1
    return scores


def knn(train: ImageSet, test: ImageSet, k: int = 1, metric: str = "l2", normalization: str = "zscore") -> dict:
    from sklearn.neighbors import KNeighborsClassifier

    _check(metric, normalization)
    x_train, x_test = _features(train, test, normalization)
    clf = KNeighborsClassifier(n_neighbors=k, metric=METRICS[metric], algorithm="brute", n_jobs=-1)
    clf.fit(x_train, train.labels)
    chunks = np.array_split(np.arange(len(x_test)), max(1, len(x_test) // 200))
    scores = np.concatenate(
        [clf.predict_proba(x_test[c]) for c in progress(chunks, f"{k}-NN on {len(x_train):,} images")]
    )
    full = np.zeros((len(test), len(train.classes)), dtype=np.float32)
    full[:, clf.classes_] = scores
    return classification_report(test.labels, full, test.classes)


def nearest_centroid(train: ImageSet, test: ImageSet, metric: str = "l2", normalization: str = "zscore") -> dict:
    from sklearn.metrics import pairwise_distances

    _check(metric, normalization)
    x_train, x_test = _features(train, test, normalization)
    classes = np.unique(train.labels)
    reduce = np.median if metric == "l1" else np.mean
    centroids = np.stack([reduce(x_train[train.labels == c], axis=0) for c in classes])
    pred = classes[pairwise_distances(x_test, centroids, metric=METRICS[metric]).argmin(1)]
    return classification_report(test.labels, _one_hot_scores(pred, len(train.classes)), test.classes)


def _check(metric: str, normalization: str) -> None:
    if metric not in METRICS:
        raise ConfigError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if normalization not in NORMALIZATIONS:
        raise ConfigError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {normalization!r}")
