"""Frame → input tensor: edgecls' preprocessing against cv2.resize(INTER_AREA), speed and grey-level error.

    python tools/bench_preprocess.py --data-dir ../shared/datasets [--frames 200] [--json out.json]

Frames are 640×480 BGR: CIFAR-10 test images scaled to 480×480 and centred (what `camera
--replay-test-set` streams), and smooth synthetic noise. Both paths centre-crop to a square first; the
baseline then reduces with INTER_AREA over every pixel, edgecls with `area_resize` (row-subsampled area).
Reported: median µs per frame for the resize alone and for the whole preprocess, and the largest and
mean absolute difference in grey levels between the two 32×32 results.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np

from edgecls.data import load_dataset
from edgecls.imaging import ImageInput, Normalization, Policy, area_resize, center_square
from edgecls.runtime.preprocess import Preprocessor


def _median_us(fn, frames, repeat: int) -> float:
    for f in frames[:20]:
        fn(f)
    times = []
    for _ in range(repeat):
        for f in frames:
            t0 = time.perf_counter()
            fn(f)
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (1: what one camera loop gets)")
    parser.add_argument("--json")
    args = parser.parse_args()
    cv2.setNumThreads(args.threads)

    test = load_dataset("cifar10", "test", args.data_dir)
    rng = np.random.default_rng(0)
    cifar_frames = []
    for img in test.images[: args.frames]:
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[:, 80:560] = cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), (480, 480), interpolation=cv2.INTER_LINEAR)
        cifar_frames.append(frame)
    noise_frames = [cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3) for _ in range(20)]
    prep = Preprocessor(ImageInput(32, 3), Policy(Normalization("zscore", (125.0,) * 3, (62.0,) * 3)))

    def inter_area(f):
        return cv2.resize(center_square(f), (32, 32), interpolation=cv2.INTER_AREA)

    def fast(f):
        return area_resize(center_square(f), 32)

    def baseline_full(f):
        small = inter_area(f)[..., ::-1].astype(np.float32)
        return ((small - prep.mean) * prep.inv_std).transpose(2, 0, 1)[None]

    results = {}
    for name, frames in (("cifar-test-640x480", cifar_frames), ("blurred-noise-640x480", noise_frames)):
        diffs = np.array([np.abs(fast(f).astype(int) - inter_area(f).astype(int)).max() for f in frames])
        means = np.array([np.abs(fast(f).astype(int) - inter_area(f).astype(int)).mean() for f in frames])
        row = {
            "frames": len(frames),
            "inter_area_resize_us": _median_us(inter_area, frames, args.repeat),
            "edgecls_resize_us": _median_us(fast, frames, args.repeat),
            "inter_area_full_preprocess_us": _median_us(baseline_full, frames, args.repeat),
            "edgecls_full_preprocess_us": _median_us(prep, frames, args.repeat),
            "max_abs_diff_grey_levels": int(diffs.max()),
            "mean_abs_diff_grey_levels": float(means.mean()),
        }
        row["resize_speedup"] = row["inter_area_resize_us"] / row["edgecls_resize_us"]
        results[name] = row
        print(
            f"{name}: INTER_AREA {row['inter_area_resize_us']:.1f} µs, edgecls {row['edgecls_resize_us']:.1f} µs "
            f"({row['resize_speedup']:.2f}×); full preprocess {row['inter_area_full_preprocess_us']:.1f} → "
            f"{row['edgecls_full_preprocess_us']:.1f} µs; max |Δ| {row['max_abs_diff_grey_levels']} grey levels, "
            f"mean {row['mean_abs_diff_grey_levels']:.3f}"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
