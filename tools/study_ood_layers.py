"""Which block's features tell "not one of my classes": the feature distance the bundles ship
(`edgecls.feature_distance`: Mahalanobis distance to the nearest class mean, Lee et al., NeurIPS 2018) block by block,
and the equal-weight sum of the blocks after each is standardized on held-out training images, so no
out-of-distribution image chooses anything.

    python tools/study_ood_layers.py mobilenet_mod --data-dir ../shared/datasets --ood-data-dir /usr/share/datasets

PyTorch FP32 on the bundled weights, the blocks export picks (`edgecls.export.feature_blocks`): a study of where to
look, before and apart from any deployed graph.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from edgecls.confidence import auroc, fpr_at_tpr
from edgecls.data import load_for_model
from edgecls.export.feature_blocks import WithFeatures, feature_blocks
from edgecls.export.sources import checkpoint_source
from edgecls.feature_distance import FeatureDistance, known_score, standardizer
from edgecls.runtime.preprocess import Preprocessor
from edgecls.zoo.pretrained import bundled_weights


def channel_means(model: WithFeatures, images: np.ndarray, prep: Preprocessor) -> np.ndarray:
    """N×ΣC: every block's output averaged over space, for each image through the runtime's preprocessing."""
    with torch.no_grad():
        return np.concatenate([model(torch.from_numpy(batch))[1].numpy() for batch in prep.batches(images, 500)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--ood", default="fashion-mnist")
    parser.add_argument("--ood-data-dir", default=None)
    parser.add_argument("--images", type=int, default=3000, help="test and OOD images scored")
    args = parser.parse_args()

    src = checkpoint_source(str(bundled_weights(args.model)))
    net, prep = src.module.eval(), Preprocessor(src.input, src.preprocess)
    model = WithFeatures(net, feature_blocks(net, src.input.channels, src.input.size))
    train = load_for_model("cifar10", "train", args.data_dir, src.input, src.preprocess)
    test = load_for_model("cifar10", "test", args.data_dir, src.input, src.preprocess)
    ood = load_for_model(args.ood, "test", args.ood_data_dir, src.input, src.preprocess)
    order = np.random.default_rng(0).permutation(len(train.labels))
    fit, held = order[:8000], order[8000:10000]
    fitted = channel_means(model, train.images[fit], prep)
    distance = FeatureDistance.fit(fitted, train.labels[fit], tuple(model.widths))
    reference, known, unknown = (
        distance.distances(channel_means(model, x, prep))
        for x in (train.images[held], test.images[: args.images], ood.images[: args.images])
    )
    for i, width in enumerate(model.widths):
        print(f"block {i:2d} ({width:4d} channels): AUROC {auroc(-known[:, i], -unknown[:, i]):.3f}")
    standardize = standardizer(reference)
    a, b = known_score(known, standardize), known_score(unknown, standardize)
    print(f"all blocks, equal weights: AUROC {auroc(a, b):.3f}, FPR at 95% TPR {fpr_at_tpr(a, b):.3f}")


if __name__ == "__main__":
    main()
