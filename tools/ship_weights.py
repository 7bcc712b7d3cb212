"""Ship a training run's best checkpoint as bundled zoo weights, with its model card.

    python tools/ship_weights.py runs/mobilenet_mod --dataset cifar10 --data-dir ../shared/datasets \
        --command "edgecls train mobilenet_mod ..." --hardware "2-core CPU"

Writes edgecls/zoo/weights/<model>.<dataset>.pt (FP32 state dict and the metadata the export needs; no
optimizer state) and <model>.<dataset>.json: the command, epochs, hardware, wall time, final validation
and test accuracy, the sha256 of every data file used and of the weights file itself.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgecls.data.locate import data_root
from edgecls.fileio import atomic_write_json, sha256_file
from edgecls.train.checkpoint import load_checkpoint, save_checkpoint
from edgecls.zoo.pretrained import WEIGHTS_DIR

DATA_FILES = {"cifar10": "cifar-10-batches-py"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--data-dir")
    parser.add_argument("--command", required=True, help="the exact command that trained the run")
    parser.add_argument("--hardware", required=True)
    args = parser.parse_args()

    ckpt = load_checkpoint(args.run / "best.pt")
    history = json.loads((args.run / "history.json").read_text())
    summary = json.loads((args.run / "summary.json").read_text())
    name = ckpt["model"]["name"]
    dst = WEIGHTS_DIR / f"{name}.{args.dataset}.pt"
    keep = ("model", "state_dict", "classes", "normalization", "input", "dataset", "metrics")
    save_checkpoint(dst, {k: ckpt[k] for k in keep})
    folder = data_root(args.data_dir) / DATA_FILES[args.dataset]
    card = {
        "model": name,
        "dataset": args.dataset,
        "command": args.command,
        "hardware": args.hardware,
        "epochs_run": len(history),
        "best_epoch": ckpt["epoch"],
        "wall_time_s": round(sum(h["epoch_s"] for h in history), 1),
        "val_top1": ckpt["metrics"]["val_acc"],
        "test_top1": summary["test_top1"],
        "test_top5": summary["test_top5"],
        "training_log_tail": [f"epoch {h['epoch']}: train {h['train_acc']:.4f} val {h['val_acc']:.4f}" for h in history[-3:]],
        "data_sha256": {p.name: sha256_file(p) for p in sorted(folder.iterdir()) if p.is_file()},
        "weights_sha256": sha256_file(dst),
        "weights_bytes": dst.stat().st_size,
    }
    atomic_write_json(WEIGHTS_DIR / f"{name}.{args.dataset}.json", card)
    print(json.dumps({k: card[k] for k in ("model", "epochs_run", "val_top1", "test_top1", "weights_bytes")}))


if __name__ == "__main__":
    main()
