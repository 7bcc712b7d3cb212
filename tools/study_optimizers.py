"""Study 1: optimizer × learning rate on mobilenet_mod (the original study's Table 1).

    python tools/study_optimizers.py --data-dir ../shared/datasets --out results/optimizers [--quick]

SGD, Adam and AdaDelta at 0.1, 0.01 and 0.001, each trained with the same schedule; reports test top-1,
best validation accuracy and seconds per epoch next to the published figures, and one PNG of the
validation curves.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _study import study_parser  # noqa: E402

from edgecls.plots import series_png  # noqa: E402
from edgecls.report import write_results  # noqa: E402
from edgecls.train import TrainConfig, train  # noqa: E402

OPTIMIZERS = ("sgd", "adam", "adadelta")
LRS = (0.1, 0.01, 0.001)
PUBLISHED = {("sgd", 0.01): 0.8327, ("adam", 0.01): 0.8207, ("adadelta", 0.1): 0.7625, ("adam", 0.1): 0.2895}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = study_parser(__doc__)
    parser.add_argument("--model", default="mobilenet_mod")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="part of the grid (default: all three)")
    parser.add_argument("--lrs", default=",".join(map(str, LRS)), help="part of the grid (default: 0.1,0.01,0.001)")
    args = parser.parse_args(argv)
    epochs = args.epochs or (1 if args.quick else 30)
    subset = 600 if args.quick else args.subset
    rows, curves = [], {}
    for optimizer in args.optimizers.split(","):
        for lr in (float(v) for v in args.lrs.split(",")):
            run = Path(args.out) / "runs" / f"{optimizer}-{lr}"
            cfg = TrainConfig(
                model=args.model,
                data_dir=args.data_dir,
                out=str(run),
                epochs=epochs,
                subset=subset,
                optimizer=optimizer,
                lr=lr,
                schedule="constant",
                weight_decay=0.0 if optimizer != "sgd" else 5e-4,
                device=args.device,
                warmup_epochs=0,
            )
            summary = train(cfg, quiet=True)
            history = summary["history"]
            curves[f"{optimizer} {lr}"] = [h["val_acc"] for h in history]
            rows.append(
                {
                    "optimizer": optimizer,
                    "lr": lr,
                    "epochs": len(history),
                    "test_top1": summary["test_top1"],
                    "best_val": summary["best_val_acc"],
                    "s_per_epoch": sum(h["epoch_s"] for h in history) / len(history),
                    "published_top1": PUBLISHED.get((optimizer, lr)),
                }
            )
            print(f"{optimizer:9s} lr {lr:<6} test {summary['test_top1']:.2%}")
    write_results(
        args.out,
        "optimizers",
        rows,
        ["optimizer", "lr", "epochs", "test_top1", "best_val", "s_per_epoch", "published_top1"],
        {"model": args.model, "epochs": epochs, "subset": subset or "full", "schedule": "constant lr"},
    )
    series_png(
        curves,
        Path(args.out) / "optimizers.png",
        "epoch",
        "validation top-1",
        f"{args.model}: optimizer × learning rate",
    )
    return rows


if __name__ == "__main__":
    main()
