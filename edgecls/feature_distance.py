"""Unknown from the network's features: the Mahalanobis distance (Lee et al., "A Simple Unified Framework for
Detecting Out-of-Distribution Samples and Adversarial Attacks", NeurIPS 2018) of each block's channel means to the
nearest class mean, under one covariance the classes share; the blocks' distances, each standardized on the
validation split, are added with equal weights. numpy only: export fits it, the runtime and eval apply it.

Why features and not the softmax: on the shipped mobilenet_mod against Fashion-MNIST (`tools/study_ood_layers.py`,
PyTorch FP32, 3,000 vs 3,000 images) the maximum softmax separates the two at AUROC 0.776 and the last block's
features at 0.780, but the early blocks at 0.975–0.998 and the equal-weight sum of all blocks at 0.998 (garments on
a black ground differ from photographs in texture and colour statistics, which early blocks describe). Lee et al.
weight the layers by a regression fitted on out-of-distribution images; equal weights need none, so no unknown
image chooses anything.

Each block's covariance is shrunk towards its mean variance (`SHRINKAGE`), so a block with channels that never fire
still inverts. A wide block is measured in its `DIRECTIONS` principal directions only (those of most within-class
variance), a deviation from Lee et al. that bounds the work per frame: mobilenet_mod's blocks take 1.81 M
multiply-adds with every direction, 0.27 M with at most 128 per block; measured on 5,000 test vs 5,000 Fashion-MNIST
images (FP32 graph), AUROC 0.9976 with every direction and 0.9975 with 128 (FPR at 95% TPR 0.0032 and 0.0026).
The bundle stores per block the whitening W (W·Wᵀ = the inverse covariance within those directions) and the class
means already whitened, so a distance is ‖f·W − centre‖².
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property

import numpy as np

OUTPUT = "features"  # the graph output holding every block's channel means, concatenated
# Up to this many images, the products run in numpy's own loops (np.einsum), not OpenBLAS: its worker threads spin for
# milliseconds after each call, and a camera loop calling once per 33 ms frame kept a core busy (36 ms of CPU per call,
# against 3.4 ms with one OpenBLAS thread; measured with `edgecls bench`, paced, on the 2-core Zen 3).
SMALL_BATCH = 16
SHRINKAGE = 1e-3  # share of the mean channel variance added to every channel's variance
DIRECTIONS = 128  # at most this many principal directions per block: bounds the cost per frame and the file
FIT_IMAGES = 10_000  # training images (validation excluded) the class means and covariances are fitted on


@dataclass(frozen=True)
class FeatureDistance:
    """The fitted class means and whitening of every block: `distances` maps features to N×blocks distances."""

    widths: tuple[int, ...]  # channels of each block, in the order the graph's `features` output concatenates them
    whiten: tuple[np.ndarray, ...]  # C×C per block (float64 holding the stored float32 values)
    centres: tuple[np.ndarray, ...]  # classes×C per block, whitened

    @classmethod
    def fit(cls, features: np.ndarray, labels: np.ndarray, widths: tuple[int, ...]) -> FeatureDistance:
        """Class means and one shared covariance per block, from training images' features (N×sum(widths))."""
        whiten, centres = [], []
        for block in np.split(features.astype(np.float64), np.cumsum(widths)[:-1], axis=1):
            present = np.unique(labels)
            means = np.stack([block[labels == c].mean(0) for c in present])
            centred = block - means[np.searchsorted(present, labels)]
            covariance = centred.T @ centred / len(block)
            covariance += (
                SHRINKAGE * max(float(np.trace(covariance)) / len(covariance), 1e-12) * np.eye(len(covariance))
            )
            values, vectors = np.linalg.eigh(covariance)  # ascending: the widest directions last
            values, vectors = values[-DIRECTIONS:], vectors[:, -DIRECTIONS:]
            w = _as_stored(vectors / np.sqrt(values))  # export scores with the numbers the bundle ships
            whiten.append(w)
            centres.append(_as_stored(means @ w))
        return cls(tuple(int(w) for w in widths), tuple(whiten), tuple(centres))

    def distances(self, features: np.ndarray) -> np.ndarray:
        """N×blocks squared distances to the nearest class mean, in float64 whatever the graph's precision."""
        f = np.asarray(features, np.float64)
        starts = np.cumsum([0, *self.widths])
        z = np.concatenate(
            [_product(f[:, a:b], w) for a, b, w in zip(starts[:-1], starts[1:], self.whiten, strict=True)], axis=1
        )
        means, sums, norms = self._side_by_side
        classes = len(norms) // len(self.widths)
        squared = np.repeat(_product(z * z, sums), classes, axis=1) - 2 * _product(z, means) + norms
        return np.maximum(squared.reshape(len(f), len(self.widths), classes).min(axis=2), 0.0)

    @cached_property
    def _side_by_side(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every block's class means in one matrix (zero outside the block's own directions), the 0/1 matrix that sums
        each block's squared norm, and the means' squared norms: two products for all blocks, not a dozen small
        ones per block (0.21 ms instead of 0.48 ms a frame for mobilenet_mod's 11 blocks on a Zen 3)."""
        ends = np.cumsum([0, *(w.shape[1] for w in self.whiten)])
        classes = len(self.centres[0])
        means = np.zeros((ends[-1], len(self.centres) * classes))
        sums = np.zeros((ends[-1], len(self.centres)))
        for i, centres in enumerate(self.centres):
            means[ends[i] : ends[i + 1], i * classes : (i + 1) * classes] = centres.T
            sums[ends[i] : ends[i + 1], i] = 1
        return means, sums, np.concatenate([(c * c).sum(axis=1) for c in self.centres])

    def to_bytes(self) -> bytes:
        """The .npz the bundle carries: plain arrays (float32), no pickle."""
        arrays = {"widths": np.array(self.widths, np.int64)}
        for i, (w, c) in enumerate(zip(self.whiten, self.centres, strict=True)):
            arrays[f"whiten_{i}"], arrays[f"centres_{i}"] = w.astype(np.float32), c.astype(np.float32)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> FeatureDistance:
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            widths = tuple(int(w) for w in arrays["widths"])
            blocks = range(len(widths))
            return cls(
                widths,
                tuple(arrays[f"whiten_{i}"].astype(np.float64) for i in blocks),
                tuple(arrays[f"centres_{i}"].astype(np.float64) for i in blocks),
            )


def _product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b; for a few rows (`SMALL_BATCH`) without OpenBLAS and its spinning threads."""
    return np.einsum("nc,ck->nk", a, b) if len(a) <= SMALL_BATCH else a @ b


def _as_stored(values: np.ndarray) -> np.ndarray:
    """float64 holding float32 values: what `to_bytes` writes and `from_bytes` reads back."""
    return values.astype(np.float32).astype(np.float64)


def standardizer(distances: np.ndarray) -> dict:
    """Each block's mean and spread of distance on in-distribution (validation) images: what puts blocks of very
    different widths on one scale before they are added."""
    return {"mean": distances.mean(0).tolist(), "std": np.maximum(distances.std(0), 1e-12).tolist()}


def known_score(distances: np.ndarray, standardize: dict) -> np.ndarray:
    """Higher means more like the training classes: minus the sum of the standardized block distances."""
    mean, std = np.asarray(standardize["mean"]), np.asarray(standardize["std"])
    return -((distances - mean) / std).sum(axis=1)
