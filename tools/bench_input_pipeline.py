"""Training input pipeline cost: full training step with batched augmentation vs the bare model step.

    python tools/bench_input_pipeline.py mobilenet_mod --data-dir ../shared/datasets [--steps 60]

Both loops run forward + backward + SGD step at the same batch size on the same device. The bare loop
reuses one pre-normalized batch; the full loop draws every batch from `BatchLoader` (index, random crop
with padding, flip, normalize). The ratio of their images/s is the pipeline's overhead.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from edgecls.data import load_dataset
from edgecls.data.loader import BatchLoader
from edgecls.data.transforms import Augment, Normalization
from edgecls.zoo import create_model


def _step(model, opt, x, y, loss_fn):
    opt.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", default="mobilenet_mod", nargs="?")
    parser.add_argument("--data-dir")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rotate", type=float, default=0.0)
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = load_dataset("cifar10", "train", args.data_dir)
    norm = Normalization.fit(data.images)
    model = create_model(args.model).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    loader = BatchLoader(data, args.batch_size, norm, Augment(4, True, args.rotate), shuffle=True, device=device)
    x0, y0 = next(loader.epoch(0))

    def timed(fn) -> float:
        for _ in range(5):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return args.steps * args.batch_size / (time.perf_counter() - t0)

    batches = loader.epoch(1)

    def full():
        x, y = next(batches)
        _step(model, opt, x, y, loss_fn)

    results = {}
    for round_ in range(2):  # alternate to even out thermal/turbo drift
        results.setdefault("bare", []).append(timed(lambda: _step(model, opt, x0, y0, loss_fn)))
        results.setdefault("full", []).append(timed(full))
        print(f"round {round_ + 1}: bare step {results['bare'][-1]:.0f} img/s, with input pipeline {results['full'][-1]:.0f} img/s")
    bare, full_ = max(results["bare"]), max(results["full"])
    print(f"{args.model} on {device}, batch {args.batch_size}: bare {bare:.0f} img/s, full {full_:.0f} img/s "
          f"→ pipeline overhead {(1 - full_ / bare) * 100:.1f}%")


if __name__ == "__main__":
    main()
