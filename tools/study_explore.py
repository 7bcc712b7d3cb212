"""Study 6: data exploration — class distribution, a sample grid, PCA and t-SNE projections, and the
first-layer kernels of a trained model.

    python tools/study_explore.py --data-dir DATA --out results/explore [--quick] [--checkpoint runs/x/best.pt]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _study import study_parser  # noqa: E402

from edgecls.data import load_dataset  # noqa: E402
from edgecls.data.split import subset  # noqa: E402
from edgecls.plots import pyplot, save_png  # noqa: E402
from edgecls.report import write_results  # noqa: E402


def _projection(points: np.ndarray, labels: np.ndarray, classes, path: Path, title: str) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    for c, name in enumerate(classes):
        sel = labels == c
        ax.scatter(points[sel, 0], points[sel, 1], s=4, label=name)
    ax.set(title=title)
    ax.legend(markerscale=3, fontsize=7)
    save_png(fig, path)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = study_parser(__doc__)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--checkpoint", help="trained model whose first-layer kernels to draw")
    parser.add_argument("--points", type=int, default=2000, help="images in the PCA/t-SNE projections")
    args = parser.parse_args(argv)
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train_set = load_dataset(args.dataset, "train", args.data_dir)
    test = load_dataset(args.dataset, "test", args.data_dir)
    counts = [
        {"class": c, "train": int(n_tr), "test": int(n_te)}
        for c, n_tr, n_te in zip(train_set.classes, train_set.class_counts(), test.class_counts(), strict=True)
    ]
    write_results(out, "class-distribution", counts, ["class", "train", "test"], {"dataset": args.dataset})

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([c["class"] for c in counts], [c["train"] for c in counts])
    ax.set(title=f"{args.dataset}: training images per class", ylabel="images")
    ax.tick_params(axis="x", rotation=45)
    save_png(fig, out / "class-distribution.png")

    per_class = 8
    fig, axes = plt.subplots(len(train_set.classes), per_class, figsize=(per_class, len(train_set.classes) * 1.05))
    for c, name in enumerate(train_set.classes):
        for j, i in enumerate(np.flatnonzero(train_set.labels == c)[:per_class]):
            img = train_set.images[i]
            axes[c, j].imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray" if img.shape[-1] == 1 else None)
            axes[c, j].axis("off")
        axes[c, 0].set_title(name, fontsize=7, loc="left")
    save_png(fig, out / "samples.png")

    sample = subset(test, 300 if args.quick else args.points, 0)
    x = sample.images.reshape(len(sample), -1).astype(np.float32) / 255.0
    pca = PCA(n_components=50 if x.shape[0] > 50 else 2, random_state=0).fit(x)
    reduced = pca.transform(x)
    _projection(
        reduced[:, :2],
        sample.labels,
        sample.classes,
        out / "pca.png",
        f"PCA of raw pixels ({pca.explained_variance_ratio_[:2].sum():.1%} variance in 2 components)",
    )
    tsne = TSNE(n_components=2, init="pca", random_state=0, perplexity=min(30, len(x) // 4)).fit_transform(reduced)
    _projection(tsne, sample.labels, sample.classes, out / "tsne.png", "t-SNE of raw pixels (after PCA to 50)")

    if args.checkpoint:
        from edgecls.train.checkpoint import load_checkpoint

        weights = next(v for k, v in load_checkpoint(args.checkpoint)["state_dict"].items() if v.ndim == 4).numpy()
        n = weights.shape[0]
        cols = 8
        fig, axes = plt.subplots(-(-n // cols), cols, figsize=(cols, -(-n // cols)))
        for ax in axes.flat:
            ax.axis("off")
        for i in range(n):
            k = weights[i].transpose(1, 2, 0)
            k = (k - k.min()) / (k.max() - k.min() + 1e-8)
            axes.flat[i].imshow(k[..., 0] if k.shape[-1] == 1 else k, cmap="gray" if k.shape[-1] == 1 else None)
        fig.suptitle("first-layer kernels")
        save_png(fig, out / "first-layer-kernels.png")
    print(f"wrote {', '.join(sorted(p.name for p in out.glob('*.png')))} to {out}")
    return counts


if __name__ == "__main__":
    main()
