"""Study 3: imbalanced CIFAR-10 — plain vs class-weighted loss, per-class metrics, k-fold model selection.

    python tools/study_imbalance.py --data-dir DATA --out results/imbalance [--quick] [--ratio 10]

The training set is cut to an exponential long-tail profile (largest/smallest class = `--ratio`); the
test set stays balanced. k-fold cross-validation on the long-tailed set picks the learning rate for
each loss; the chosen setting is then trained on all of it and reported with per-class precision,
recall and BCR, and the best and worst five classes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _study import study_parser  # noqa: E402

from edgecls.data import load_dataset  # noqa: E402
from edgecls.data.split import kfold_indices, long_tail_indices, subset  # noqa: E402
from edgecls.plots import confusion_matrix_png  # noqa: E402
from edgecls.report import write_results  # noqa: E402
from edgecls.train import TrainConfig, train  # noqa: E402


def main(argv: list[str] | None = None) -> list[dict]:
    parser = study_parser(__doc__)
    parser.add_argument("--model", default="mobilenet_mod")
    parser.add_argument("--ratio", type=float, default=10.0)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--lrs", default="0.05,0.01")
    args = parser.parse_args(argv)
    out = Path(args.out)
    epochs = args.epochs or (1 if args.quick else 15)
    train_full = load_dataset("cifar10", "train", args.data_dir)
    test = load_dataset("cifar10", "test", args.data_dir)
    if args.quick:
        train_full, test = subset(train_full, 1500, 0), subset(test, 300, 0)
    data = train_full.take(long_tail_indices(train_full.labels, args.ratio, seed=0), name="cifar10-longtail")
    counts = data.class_counts().tolist()
    lrs = [float(v) for v in args.lrs.split(",")]
    rows, selection = [], []
    for weighted in (False, True):
        cv = {}
        for lr in lrs:
            accs = []
            for k, (tr, va) in enumerate(kfold_indices(data.labels, args.folds, seed=0)):
                cfg = TrainConfig(
                    model=args.model,
                    out=str(out / "runs" / f"cv-w{int(weighted)}-lr{lr}-f{k}"),
                    epochs=epochs,
                    lr=lr,
                    class_weighted=weighted,
                    device=args.device,
                )
                accs.append(train(cfg, data.take(tr), data.take(va), quiet=True)["test_top1"])
            cv[lr] = float(np.mean(accs))
            selection.append(
                {"loss": "weighted" if weighted else "plain", "lr": lr, "cv_mean_top1": cv[lr], "folds": args.folds}
            )
        best_lr = max(cv, key=cv.get)
        cfg = TrainConfig(
            model=args.model,
            out=str(out / "runs" / f"final-w{int(weighted)}"),
            epochs=epochs,
            lr=best_lr,
            class_weighted=weighted,
            device=args.device,
        )
        summary = train(cfg, data, test, quiet=True)
        report = json.loads((Path(cfg.out) / "test_report.json").read_text())
        name = "class-weighted" if weighted else "plain"
        confusion_matrix_png(
            np.array(report["confusion_matrix"]),
            test.classes,
            out / f"imbalance-{name}.confusion.png",
            title=f"{name} loss, long-tail ×{args.ratio:g}",
        )
        rows.append(
            {
                "loss": name,
                "lr (by CV)": best_lr,
                "test_top1": summary["test_top1"],
                "macro_recall": report["macro"]["recall"],
                "macro_precision": report["macro"]["precision"],
                "macro_bcr": report["macro"]["bcr"],
                "best5": ", ".join(report["best"]),
                "worst5": ", ".join(report["worst"]),
            }
        )
        for r in report["per_class"]:
            rows[-1][f"recall:{r['class']}"] = r["recall"]
        print(f"{name:15s} lr {best_lr}: top-1 {summary['test_top1']:.2%}, macro BCR {report['macro']['bcr']:.3f}")
    meta = {"model": args.model, "epochs": epochs, "imbalance_ratio": args.ratio, "train_counts_per_class": counts}
    write_results(
        out,
        "imbalance",
        rows,
        ["loss", "lr (by CV)", "test_top1", "macro_precision", "macro_recall", "macro_bcr", "best5", "worst5"],
        meta,
    )
    write_results(out, "imbalance-cv", selection, ["loss", "lr", "folds", "cv_mean_top1"], meta)
    return rows


if __name__ == "__main__":
    main()
