"""Train a torchvision model with plain PyTorch, as a user's own script would, for `edgecls export` to take over.

Nothing here uses edgecls: CIFAR-10 is read with pickle, pixels are scaled to 0–1 and normalized with ImageNet's
mean/std (torchvision's ToTensor + Normalize), the model is trained under DataParallel and saved as such scripts save
it, ({"state_dict": {"module.…"}, "epoch", "best_acc"}), and exported to ONNX with a fixed batch of 1 (opset 13, the
input named "input.1"). The script prints the plain-PyTorch test top-1 that the exported bundle must reproduce.

    python tools/train_elsewhere.py --data-dir ../shared/datasets --out runs/elsewhere --epochs 4
    edgecls export torchvision:resnet18 --model-arg num_classes=10 --weights runs/elsewhere/checkpoint.pth --size 32 \\
        --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 --dataset cifar10 --fp16 --int8
    edgecls export runs/elsewhere/resnet18.onnx --mean 0.485,0.456,0.406 --std 0.229,0.224,0.225 \\
        --dataset cifar10 --int8
"""

from __future__ import annotations

import argparse
import json
import pickle
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def read_cifar(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    batches = [pickle.loads((root / "cifar-10-batches-py" / n).read_bytes(), encoding="bytes") for n in names]
    images = np.concatenate([b[b"data"] for b in batches]).reshape(-1, 3, 32, 32)
    return images, np.concatenate([b[b"labels"] for b in batches]).astype(np.int64)


def normalize(images: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(images).float() / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/elsewhere"))
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)
    train_x, train_y = read_cifar(args.data_dir, "train")
    test_x, test_y = read_cifar(args.data_dir, "test")
    model = torch.nn.DataParallel(torchvision.models.get_model(args.model, weights=None, num_classes=10))
    steps = args.epochs * (len(train_x) // 128)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=steps)
    started = time.time()
    for epoch in range(args.epochs):
        model.train()
        order = torch.randperm(len(train_x))
        for step, idx in enumerate(order[: steps // args.epochs * 128].split(128)):
            x = normalize(train_x[idx.numpy()])
            flip = torch.rand(len(x)) < 0.5
            x[flip] = x[flip].flip(-1)
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), torch.from_numpy(train_y[idx.numpy()])).backward()
            optimizer.step()
            schedule.step()
            if step % 100 == 0:
                print(f"epoch {epoch + 1} step {step} {time.time() - started:.0f} s", flush=True)
    model.eval()
    with torch.no_grad():
        predicted = torch.cat(
            [model(normalize(test_x[i : i + 500])).argmax(1) for i in range(0, len(test_x), 500)]
        ).numpy()
    top1 = float((predicted == test_y).mean())
    torch.save({"state_dict": model.state_dict(), "epoch": args.epochs, "best_acc": top1}, args.out / "checkpoint.pth")
    torch.onnx.export(
        model.module,
        (torch.zeros(1, 3, 32, 32),),
        str(args.out / f"{args.model}.onnx"),
        dynamo=False,
        opset_version=13,
        input_names=["input.1"],
        output_names=["output"],
    )
    result = {
        "model": f"torchvision {args.model}",
        "epochs": args.epochs,
        "train_s": round(time.time() - started, 1),
        "plain_pytorch_test_top1": top1,
        "test_images": int(len(test_y)),
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
