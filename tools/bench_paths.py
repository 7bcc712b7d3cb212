"""`Classifier.predict` against what a user would write by hand, on the same frames, in one interleaved run.

    python tools/bench_paths.py exports/mobilenet_mod --data-dir ../shared/datasets

Frames: the first `--frames` test images as 640×480 BGR camera frames (each enlarged 15× and centred). Paths,
end to end from a frame to a label, batch 1:
- torch eager FP32 with a hand-written INTER_AREA resize (what a PyTorch user writes first);
- ONNX Runtime FP32 with its default threads, hand-written preprocessing;
- ONNX Runtime INT8 U8S8 on one thread, hand-written preprocessing (the best hand-written path found);
- `Classifier.predict` with its automatic choice, and with precision fp32.
Each of `--processes` fresh processes times every path in `--blocks` blocks, the order reversed in every other block
(no path always follows the same neighbour): hot (back to back) and paced (one call every `--pace-ms`, as a camera
delivers frames), with the process's CPU time per paced call. The table gives the median over processes of each
figure, its spread (min–max), and the ratio to the best hand-written path's median; the ratios are what the
comparison is about, the absolute times belong to this machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import cv2
import numpy as np

BASELINE = "ORT INT8 U8S8, 1 thread (hand-written)"


def camera_frames(data_dir: str, bundle_dir: str, count: int) -> list[np.ndarray]:
    from edgecls.bundle import Bundle
    from edgecls.data import load_dataset

    bundle = Bundle.open(bundle_dir)
    images = load_dataset(bundle.manifest.dataset, "test", data_dir).images[:count]
    frames = []
    for image in images:
        big = cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2BGR), (480, 480), interpolation=cv2.INTER_NEAREST)
        frame = np.zeros((480, 640, 3), np.uint8)
        frame[:, 80:560] = big
        frames.append(frame)
    return frames


def hand_written(bundle_dir: str) -> dict:
    """The paths a user writes without edgecls: centre square, INTER_AREA, BGR→RGB, (x - mean) / std, NCHW."""
    import onnxruntime as ort

    from edgecls.bundle import Bundle

    bundle = Bundle.open(bundle_dir)
    size = bundle.input.size
    mean = np.asarray(bundle.preprocess.normalization.mean, np.float32)
    std = np.asarray(bundle.preprocess.normalization.std, np.float32)

    def tensor(frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape[:2]
        side = min(h, w)
        top, left = (h - side) // 2, (w - side) // 2
        small = cv2.resize(frame[top : top + side, left : left + side], (size, size), interpolation=cv2.INTER_AREA)
        return ((small[..., ::-1].astype(np.float32) - mean) / std).transpose(2, 0, 1)[None].copy()

    def onnx(file: str, threads: int | None):
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(bundle.root / file), options, providers=["CPUExecutionProvider"])
        return lambda frame: int(session.run(None, {"input": tensor(frame)})[0].argmax())

    import torch

    from edgecls.train.checkpoint import load_checkpoint, model_from_checkpoint

    model = model_from_checkpoint(load_checkpoint(bundle.root / "model.pt"))

    def eager(frame: np.ndarray) -> int:
        with torch.inference_mode():
            return int(model(torch.from_numpy(tensor(frame))).argmax())

    return {
        "torch eager FP32 (hand-written)": eager,
        "ORT FP32, default threads (hand-written)": onnx("model.onnx", None),
        BASELINE: onnx("model.int8.onnx", 1),
    }


def time_path(predict, frames: list[np.ndarray], pace_ms: float) -> dict:
    for frame in frames[:20]:
        predict(frame)
    hot = []
    for frame in frames:
        started = time.perf_counter()
        predict(frame)
        hot.append(time.perf_counter() - started)
    paced, cpu_started = [], time.process_time()
    next_call = time.perf_counter()
    for frame in frames[: len(frames) // 4]:
        next_call += pace_ms / 1e3
        time.sleep(max(0.0, next_call - time.perf_counter()))
        started = time.perf_counter()
        predict(frame)
        paced.append(time.perf_counter() - started)
    cpu_ms = (time.process_time() - cpu_started) * 1e3 / len(paced)
    return {"hot_ms": float(np.median(hot) * 1e3), "paced_ms": float(np.median(paced) * 1e3), "cpu_ms": cpu_ms}


def worker(args) -> None:
    from edgecls.runtime import Classifier

    frames = camera_frames(args.data_dir, args.bundle, args.frames)
    paths = hand_written(args.bundle)
    auto = Classifier.load(args.bundle)
    fp32 = Classifier.load(args.bundle, precision="fp32")
    paths[f"Classifier.predict auto ({auto.info.precision}, {auto.info.threads} thread)"] = lambda f: auto.predict(f)
    paths["Classifier.predict precision fp32"] = lambda f: fp32.predict(f)
    results: dict = {name: [] for name in paths}
    order = list(paths.items())
    for block in range(args.blocks):
        for name, predict in order if block % 2 == 0 else order[::-1]:
            results[name].append(time_path(predict, frames, args.pace_ms))
    medians = {}
    for name, blocks in results.items():
        medians[name] = {key: float(np.median([block[key] for block in blocks])) for key in blocks[0]}
    print(json.dumps(medians))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--data-dir")
    parser.add_argument("--frames", type=int, default=600)
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--pace-ms", type=float, default=33.0)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json")
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    runs = []
    for i in range(args.processes):
        command = [sys.executable, __file__, "--worker", *sys.argv[1:]]
        runs.append(json.loads(subprocess.run(command, capture_output=True, text=True, check=True).stdout))
        print(f"process {i + 1}/{args.processes} done", file=sys.stderr, flush=True)
    table = {name: {k: [run[name][k] for run in runs] for k in ("hot_ms", "paced_ms", "cpu_ms")} for name in runs[0]}
    base = {k: float(np.median(v)) for k, v in table[BASELINE].items()}
    print(f"{args.bundle}: {args.frames} test images as 640×480 frames; median of {args.processes} processes")
    print("| path | hot p50 ms | paced p50 ms | CPU ms per paced frame | hot × best hand-written | paced × best |")
    print("|---|---|---|---|---|---|")
    for name, figures in table.items():
        cells = [f"{np.median(v):.3f} ({min(v):.3f}–{max(v):.3f})" for v in figures.values()]
        ratios = [np.median(figures[k]) / base[k] for k in ("hot_ms", "paced_ms")]
        print(f"| {name} | {' | '.join(cells)} | {ratios[0]:.2f}× | {ratios[1]:.2f}× |")
    if args.json:
        from edgecls.fileio import atomic_write_json

        atomic_write_json(args.json, {"runs": runs, "baseline": BASELINE})


if __name__ == "__main__":
    main()
