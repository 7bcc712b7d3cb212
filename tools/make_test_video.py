"""Write a labelled test set as a video, for reproducible camera-loop benchmarks.

    python tools/make_test_video.py --data-dir ../shared/datasets --out cifar10-640x480.mp4 [--frames 600 --fps 30]

Each frame is one test image scaled to the frame height and centred (the framing `camera
--replay-test-set` uses), so `edgecls camera BUNDLE --source cifar10-640x480.mp4 --headless` measures the
whole capture → decode → preprocess → infer path on a real video file.
"""

from __future__ import annotations

import argparse

import cv2

from edgecls.camera.sources import ReplaySource
from edgecls.data import load_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--out", default="test-640x480.mp4")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--size", default="640x480")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    test = load_dataset(args.dataset, "test", args.data_dir)
    source = ReplaySource(test.images[: args.frames], test.labels[: args.frames], (w, h))
    writer = cv2.VideoWriter(args.out, cv2.VideoWriter_fourcc(*"mp4v"), args.fps, (w, h))
    if not writer.isOpened():
        raise SystemExit(f"OpenCV cannot write {args.out} with the mp4v codec")
    n = 0
    while (frame := source.read()[0]) is not None:
        writer.write(frame)
        n += 1
    writer.release()
    print(f"wrote {n} frames of {w}×{h} at {args.fps:g} fps to {args.out}")


if __name__ == "__main__":
    main()
