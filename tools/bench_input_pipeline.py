"""Training step cost: memory format, and the input pipeline's share, as ratios measured in one run.

    python tools/bench_input_pipeline.py mobilenet_mod --data-dir ../shared/datasets [--steps 60]

Every loop runs forward + backward + SGD step at the same batch size on the same device. The bare loops
reuse one pre-normalized batch, once with NCHW (contiguous) tensors and once with channels_last (NHWC),
which is what `edgecls train` uses; their ratio is the memory-format speed-up. The full loop is the
channels_last step fed by `BatchLoader` (index, random crop with padding, flip, normalize); its ratio to
the bare channels_last loop is the pipeline's overhead.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch import nn

from edgecls.data import load_dataset
from edgecls.data.loader import BatchLoader
from edgecls.data.transforms import Augment
from edgecls.imaging import Normalization
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
    nchw = create_model(args.model).to(device).train()
    nhwc = copy.deepcopy(nchw).to(memory_format=torch.channels_last)
    opt_nchw = torch.optim.SGD(nchw.parameters(), lr=0.01, momentum=0.9)
    opt_nhwc = torch.optim.SGD(nhwc.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    loader = BatchLoader(data, args.batch_size, norm, Augment(4, True, args.rotate), shuffle=True, device=device)
    x0, y0 = next(loader.epoch(0))
    x0_nhwc = x0.contiguous(memory_format=torch.channels_last)

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
        _step(nhwc, opt_nhwc, x.contiguous(memory_format=torch.channels_last), y, loss_fn)

    loops = {
        "bare NCHW": lambda: _step(nchw, opt_nchw, x0, y0, loss_fn),
        "bare NHWC": lambda: _step(nhwc, opt_nhwc, x0_nhwc, y0, loss_fn),
        "full NHWC": full,
    }
    results: dict[str, list[float]] = {name: [] for name in loops}
    for round_ in range(2):  # alternate to even out thermal/turbo drift
        for name, fn in loops.items():
            results[name].append(timed(fn))
        print(f"round {round_ + 1}: " + ", ".join(f"{name} {r[-1]:.0f} img/s" for name, r in results.items()))
    best = {name: max(r) for name, r in results.items()}
    print(
        f"{args.model} on {device}, batch {args.batch_size}: channels_last "
        f"{best['bare NHWC'] / best['bare NCHW']:.2f}x "
        f"NCHW ({best['bare NHWC']:.0f} vs {best['bare NCHW']:.0f} img/s); input pipeline overhead "
        f"{(1 - best['full NHWC'] / best['bare NHWC']) * 100:.1f}% ({best['full NHWC']:.0f} img/s)"
    )


if __name__ == "__main__":
    main()
