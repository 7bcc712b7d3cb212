"""The real-time loop: capture thread → newest frame → Classifier → overlay, log and latency summary.

Per frame it records capture wait (time the loop waited for a new frame), preprocess, inference,
postprocess and total; at exit it prints p50/p90/p99 per stage, FPS, dropped frames and, when replaying
a labelled test set, the running accuracy next to the latency.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from rich.table import Table

from edgecls.console import console
from edgecls.fileio import atomic_write_json
from edgecls.runtime.classifier import Classifier
from edgecls.runtime.sources import LatestFrameGrabber, ReplaySource, open_source
from edgecls.runtime.stats import StageTimer

STAGES = ("capture_wait", "preprocess", "inference", "postprocess", "total")


@dataclass(frozen=True)
class CameraOptions:
    source: str = "0"
    headless: bool = False
    record: str | None = None
    jsonl: str | None = None
    max_frames: int | None = None
    replay_test_set: str | None = None
    data_dir: str | None = None
    frame_size: str = "640x480"
    fps: float = 0.0
    summary_json: str | None = None
    window: str = "edgecls"


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        from edgecls.errors import ConfigError

        raise ConfigError(f"--frame-size must look like 640x480, got {text!r}") from exc
    return w, h


def _make_source(options: CameraOptions):
    if options.replay_test_set:
        from edgecls.data import load_dataset

        test = load_dataset(options.replay_test_set, "test", options.data_dir)
        return ReplaySource(test.images, test.labels, _parse_size(options.frame_size), options.fps)
    return open_source(options.source)


def _overlay(image: np.ndarray, text_lines: list[str]) -> np.ndarray:
    for i, line in enumerate(text_lines):
        y = 22 + 20 * i
        cv2.putText(image, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(image, line, (8, y), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def run_camera(clf: Classifier, options: CameraOptions) -> dict:
    grabber = LatestFrameGrabber(_make_source(options)).start()
    timer = StageTimer()
    writer = None
    log = open(options.jsonl, "w") if options.jsonl else None  # noqa: SIM115 (closed in finally)
    frames = correct = labelled = 0
    started = time.perf_counter()
    interrupted = False
    try:
        while options.max_frames is None or frames < options.max_frames:
            t0 = time.perf_counter()
            frame = grabber.next_frame()
            if frame is None:
                break
            wait_ms = (time.perf_counter() - t0) * 1e3
            pred = clf.predict(frame.image)
            timings = {"capture_wait": wait_ms, **pred.timings_ms}
            timings["total"] = (time.perf_counter() - t0) * 1e3
            timer.add(timings)
            frames += 1
            if frame.label is not None:
                labelled += 1
                correct += int(pred.index == frame.label)
            fps = frames / (time.perf_counter() - started)
            if log:
                record = {"frame": frame.index, "label": pred.label, "index": pred.index, "confidence": round(pred.confidence, 5),
                          "ms": {k: round(v, 4) for k, v in timings.items()}, "dropped_so_far": grabber.dropped}
                if frame.label is not None:
                    record["true_index"] = frame.label
                log.write(json.dumps(record) + "\n")
            if options.record or not options.headless:
                lines = [f"{pred.label} {pred.confidence:.0%}", f"{fps:.1f} FPS  dropped {grabber.dropped}",
                         "  ".join(f"{k[:4]} {timings[k]:.2f}" for k in STAGES[1:])]
                if labelled:
                    lines.append(f"replay accuracy {correct / labelled:.2%} ({labelled})")
                shown = _overlay(frame.image.copy(), lines)
                if options.record:
                    if writer is None:
                        h, w = shown.shape[:2]
                        writer = cv2.VideoWriter(options.record, cv2.VideoWriter_fourcc(*"mp4v"), grabber.source.fps or 30.0, (w, h))
                    writer.write(shown)
                if not options.headless:
                    cv2.imshow(options.window, shown)
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                        break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        grabber.stop()
        if writer is not None:
            writer.release()
        if log:
            log.close()
        if not options.headless:
            cv2.destroyAllWindows()
    elapsed = time.perf_counter() - started
    summary = {
        "backend": clf.info.to_dict(),
        "frames": frames, "captured": grabber.captured, "dropped": grabber.dropped, "reconnects": grabber.reconnects,
        "seconds": elapsed, "fps": frames / elapsed if elapsed > 0 else 0.0, "interrupted": interrupted,
        "latency_ms": timer.summary(),
        "accuracy": (correct / labelled) if labelled else None, "labelled_frames": labelled,
    }
    _print_summary(summary)
    if options.summary_json:
        from edgecls.plots import latency_histogram

        atomic_write_json(options.summary_json, summary)
        latency_histogram({s: timer.samples[s] for s in ("preprocess", "inference", "total")},
                          Path(options.summary_json).with_suffix(".png"), title="camera loop latency per frame")
    return summary


def _print_summary(summary: dict) -> None:
    table = Table(title=f"{summary['frames']} frames, {summary['fps']:.1f} FPS, {summary['dropped']} dropped")
    for col in ("stage (ms)", "p50", "p90", "p99", "mean"):
        table.add_column(col)
    for stage in STAGES:
        s = summary["latency_ms"].get(stage)
        if s and s.get("n"):
            table.add_row(stage, f"{s['p50']:.3f}", f"{s['p90']:.3f}", f"{s['p99']:.3f}", f"{s['mean']:.3f}")
    console.print(table)
    total = summary["latency_ms"].get("total", {})
    line = f"frames {summary['frames']}  fps {summary['fps']:.1f}  dropped {summary['dropped']}"
    if total.get("n"):
        line += f"  total p50 {total['p50']:.3f} ms p99 {total['p99']:.3f} ms"
    if summary["accuracy"] is not None:
        line += f"  accuracy {summary['accuracy']:.2%} on {summary['labelled_frames']} labelled frames"
    console.print(line, soft_wrap=True)
