"""Study 4: classical baselines on raw pixels — kNN (k = 1, 3) and nearest centroid, L1/L2/cosine,
z-score vs min-max normalization.

    python tools/study_baselines.py --data-dir DATA --out results/baselines [--quick] [--train-subset N]

The original study reported kNN k=1 L1 35.48% and nearest centroid 27.84% on CIFAR-10.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _study import study_parser  # noqa: E402

from edgecls.baselines import knn, nearest_centroid  # noqa: E402
from edgecls.data import load_dataset  # noqa: E402
from edgecls.data.split import subset  # noqa: E402
from edgecls.report import write_results  # noqa: E402

PUBLISHED = {("knn", 1, "l1"): 0.3548, ("centroid", None, None): 0.2784}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = study_parser(__doc__)
    parser.add_argument("--train-subset", type=int, default=None)
    parser.add_argument("--test-subset", type=int, default=None)
    args = parser.parse_args(argv)
    train_set = load_dataset("cifar10", "train", args.data_dir)
    test = load_dataset("cifar10", "test", args.data_dir)
    train_set = subset(train_set, 1000 if args.quick else args.train_subset, 0)
    test = subset(test, 200 if args.quick else args.test_subset, 0)
    rows = []
    for normalization in ("zscore", "minmax"):
        for metric in ("l1", "l2", "cosine"):
            for method, k in (("knn", 1), ("knn", 3), ("centroid", None)):
                t0 = time.perf_counter()
                report = (
                    knn(train_set, test, k, metric, normalization)
                    if method == "knn"
                    else nearest_centroid(train_set, test, metric, normalization)
                )
                published = PUBLISHED.get((method, k, metric)) or (
                    PUBLISHED[("centroid", None, None)] if method == "centroid" else None
                )
                rows.append(
                    {
                        "method": method,
                        "k": k,
                        "metric": metric,
                        "normalization": normalization,
                        "top1": report["top1"],
                        "macro_f1": report["macro"]["f1"],
                        "seconds": time.perf_counter() - t0,
                        "published_top1": published,
                    }
                )
                print(f"{method:8s} k={k or '-'} {metric:6s} {normalization:6s} top-1 {report['top1']:.2%}")
    write_results(
        args.out,
        "baselines",
        rows,
        ["method", "k", "metric", "normalization", "top1", "macro_f1", "seconds", "published_top1"],
        {
            "train_images": len(train_set),
            "test_images": len(test),
            "note": "published centroid figure is the study's single nearest-centroid number (metric not stated)",
        },
    )
    return rows


if __name__ == "__main__":
    main()
