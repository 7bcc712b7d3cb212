"""Index selection: stratified validation splits, class-balanced subsets, long-tailed profiles, k folds."""

from __future__ import annotations

import numpy as np

from edgecls.data.imageset import ImageSet
from edgecls.errors import ConfigError


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (keep, held_out) with `fraction` of every class held out."""
    rng = np.random.default_rng(seed)
    keep, held = [], []
    for cls in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == cls))
        n_held = int(round(len(idx) * fraction))
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


def balanced_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """About `n` indices, the same number from every class (remainder to the first classes)."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per_class = np.full(len(classes), n // len(classes))
    per_class[: n % len(classes)] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, per_class, strict=True)]
    return np.sort(np.concatenate(picked))


def long_tail_indices(labels: np.ndarray, imbalance_ratio: float, seed: int) -> np.ndarray:
    """Exponential long-tail profile (Cui et al. 2019): class i keeps n_max · ratio^(-i/(C-1)) images."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    n_max = min(np.sum(labels == c) for c in classes)
    picked = []
    for i, c in enumerate(classes):
        keep = max(1, int(n_max * imbalance_ratio ** (-i / max(1, len(classes) - 1))))
        picked.append(rng.permutation(np.flatnonzero(labels == c))[:keep])
    return np.sort(np.concatenate(picked))


def kfold_indices(labels: np.ndarray, k: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import StratifiedKFold

    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return list(folds.split(np.zeros(len(labels)), labels))


def subset(data: ImageSet, n: int | None, seed: int) -> ImageSet:
    if not n or n >= len(data):
        return data
    return data.take(balanced_subset(data.labels, n, seed), name=f"{data.name}[{n}]")


def train_val_split(data: ImageSet, split: dict) -> tuple[ImageSet, ImageSet]:
    """The training and validation sets a run used, rebuilt from its split record {seed, val_fraction, subset}.

    Training selects its checkpoint on this validation set and export gates INT8 on it, so both call this.
    """
    data = subset(data, split.get("subset"), split["seed"])
    train_idx, val_idx = stratified_split(data.labels, split["val_fraction"], split["seed"])
    missing = len(np.unique(data.labels)) - len(np.unique(data.labels[train_idx]))
    if len(val_idx) == 0 or missing:
        need = int(np.ceil(len(data.classes) / split["val_fraction"]))
        raise ConfigError(
            f"{len(data)} images with val_fraction {split['val_fraction']} leave "
            + (
                f"{missing} of {len(data.classes)} classes without training images"
                if missing
                else "no validation images"
            )
            + f": use at least {need} images (--subset {need}) or a larger --val-fraction"
        )
    return data.take(train_idx, f"{data.name}:train"), data.take(val_idx, f"{data.name}:val")
