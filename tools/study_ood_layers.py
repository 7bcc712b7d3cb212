"""Which layer's features tell "not one of my classes": Mahalanobis distance (Lee et al., NeurIPS 2018: class means,
one shared covariance) on the channel means of every block of a zoo model, and their equal-weight sum after each
layer's score is standardized on held-out training images, so no out-of-distribution image chooses anything.

    python tools/study_ood_layers.py mobilenet_mod --data-dir ../shared/datasets --ood-data-dir /usr/share/datasets

PyTorch FP32 on the bundled weights: a study of where to look before a deployed graph exposes those features.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from edgecls.confidence import auroc, fpr_at_tpr
from edgecls.data import load_for_model
from edgecls.export.sources import checkpoint_source
from edgecls.zoo.pretrained import bundled_weights


def block_means(model: torch.nn.Module, blocks, images: np.ndarray, normalization) -> list[np.ndarray]:
    """Each block's output averaged over space, for every image: one N×channels array per block."""
    means: dict[int, list[np.ndarray]] = {i: [] for i in range(len(blocks))}
    hooks = [
        block.register_forward_hook(lambda _m, _i, out, i=i: means[i].append(out.detach().mean((2, 3)).numpy()))
        for i, block in enumerate(blocks)
    ]
    mean = torch.tensor(normalization.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(normalization.std, dtype=torch.float32).view(1, -1, 1, 1)
    with torch.no_grad():
        for start in range(0, len(images), 500):
            model((torch.from_numpy(images[start : start + 500]).permute(0, 3, 1, 2).float() - mean) / std)
    for hook in hooks:
        hook.remove()
    return [np.concatenate(means[i]) for i in range(len(blocks))]


def mahalanobis(features: np.ndarray, labels: np.ndarray, classes: int):
    """A score (higher: more like the training data) from class means and their shared covariance."""
    means = np.stack([features[labels == c].mean(0) for c in range(classes)])
    centred = features - means[labels]
    precision = np.linalg.pinv(centred.T @ centred / len(features) + 1e-4 * np.eye(features.shape[1]))
    return lambda f: -np.stack([np.einsum("ij,jk,ik->i", f - m, precision, f - m) for m in means], 1).min(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--ood", default="fashion-mnist")
    parser.add_argument("--ood-data-dir", default=None)
    parser.add_argument("--images", type=int, default=3000, help="test and OOD images scored")
    args = parser.parse_args()

    src = checkpoint_source(str(bundled_weights(args.model)))
    model, normalization = src.module.eval(), src.preprocess.normalization
    blocks = list(model.features)
    train = load_for_model("cifar10", "train", args.data_dir, src.input, src.preprocess)
    test = load_for_model("cifar10", "test", args.data_dir, src.input, src.preprocess)
    ood = load_for_model(args.ood, "test", args.ood_data_dir, src.input, src.preprocess)
    order = np.random.default_rng(0).permutation(len(train.labels))
    fit, held = order[:8000], order[8000:10000]
    layers = [block_means(model, blocks, x, normalization) for x in (train.images[fit], train.images[held])]
    known, unknown = (block_means(model, blocks, x[: args.images], normalization) for x in (test.images, ood.images))
    total_known, total_unknown = 0.0, 0.0
    for i, (fitted, held_out) in enumerate(zip(*layers, strict=True)):
        score = mahalanobis(fitted, train.labels[fit], len(train.classes))
        reference = score(held_out)
        a, b = score(known[i]), score(unknown[i])
        total_known = total_known + (a - reference.mean()) / reference.std()
        total_unknown = total_unknown + (b - reference.mean()) / reference.std()
        print(f"block {i:2d} ({fitted.shape[1]:4d} channels): AUROC {auroc(a, b):.3f}")
    print(
        f"all blocks, equal weights: AUROC {auroc(total_known, total_unknown):.3f}, "
        f"FPR at 95% TPR {fpr_at_tpr(total_known, total_unknown):.3f}"
    )


if __name__ == "__main__":
    main()
