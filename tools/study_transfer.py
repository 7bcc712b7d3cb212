"""Study 2: transfer learning CIFAR-100 → CIFAR-10, frozen backbone vs last blocks unfrozen vs scratch.

    python tools/study_transfer.py --data-dir DATA --out results/transfer [--quick] [--model mobilenet_mod]

Pre-trains on CIFAR-100 (fine labels), then fine-tunes on CIFAR-10 three ways: only the new head
(`--trainable-blocks 1`), the head and the last blocks (`--unfrozen`, default 4), and everything from
scratch with the same epochs. With `--quick` and no CIFAR-100 under DATA, a synthetic CIFAR-100 in the
official format is written under the results folder so the whole path still runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _study import study_parser  # noqa: E402

from edgecls.data import load_dataset  # noqa: E402
from edgecls.errors import DatasetError  # noqa: E402
from edgecls.plots import series_png  # noqa: E402
from edgecls.report import write_results  # noqa: E402
from edgecls.train import TrainConfig, train  # noqa: E402


def _synthetic_cifar100(root: Path) -> Path:
    import pickle

    import numpy as np

    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", 2000), ("test", 500)):
        fine = rng.integers(0, 100, n)
        base = (fine[:, None] * np.array([37, 91, 151])[None] % 256)[:, :, None].repeat(1024, 2)
        data = np.clip(base + rng.normal(0, 25, base.shape), 0, 255).astype(np.uint8).reshape(n, 3072)
        batch = {b"data": data, b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()}
        (folder / name).write_bytes(pickle.dumps(batch))
    meta = {
        b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
        b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
    }
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return root


def main(argv: list[str] | None = None) -> list[dict]:
    parser = study_parser(__doc__)
    parser.add_argument("--model", default="mobilenet_mod")
    parser.add_argument("--unfrozen", type=int, default=4, help="blocks (head included) fine-tuned in the partial run")
    args = parser.parse_args(argv)
    out = Path(args.out)
    epochs = args.epochs or (1 if args.quick else 15)
    subset = 1000 if args.quick else None
    c100_dir = args.data_dir
    try:
        load_dataset("cifar100", "test", c100_dir)
        c100_source = "CIFAR-100"
    except DatasetError:
        if not args.quick:
            raise
        c100_dir = str(_synthetic_cifar100(out / "synthetic-data"))
        c100_source = "synthetic CIFAR-100 (official format; the real one is not available here)"
    common = dict(model=args.model, epochs=epochs, subset=subset, device=args.device, lr=0.05)
    pre = train(
        TrainConfig(dataset="cifar100", data_dir=c100_dir, out=str(out / "runs" / "cifar100"), **common), quiet=True
    )
    rows, curves = [], {}
    for name, extra in (
        ("frozen backbone (head only)", {"init_from": pre["checkpoint"], "trainable_blocks": 1}),
        (f"last {args.unfrozen} blocks unfrozen", {"init_from": pre["checkpoint"], "trainable_blocks": args.unfrozen}),
        ("from scratch", {}),
    ):
        run = out / "runs" / name.split()[0]
        summary = train(
            TrainConfig(dataset="cifar10", data_dir=args.data_dir, out=str(run), **common, **extra), quiet=True
        )
        curves[name] = [h["val_acc"] for h in summary["history"]]
        rows.append(
            {
                "setting": name,
                "epochs": epochs,
                "test_top1": summary["test_top1"],
                "best_val": summary["best_val_acc"],
                "s_per_epoch": sum(h["epoch_s"] for h in summary["history"]) / len(summary["history"]),
            }
        )
        print(f"{name:32s} test {summary['test_top1']:.2%}")
    write_results(
        out,
        "transfer",
        rows,
        ["setting", "epochs", "test_top1", "best_val", "s_per_epoch"],
        {
            "model": args.model,
            "pretrained_on": c100_source,
            "cifar100_test_top1": pre["test_top1"],
            "subset": subset or "full",
        },
    )
    series_png(curves, out / "transfer.png", "epoch", "CIFAR-10 validation top-1", "CIFAR-100 → CIFAR-10")
    return rows


if __name__ == "__main__":
    main()
