"""The real-time loop: capture thread → newest frame → Classifier → overlay, log and latency summary.

Per frame it records the wait for a new frame apart from the work on it (preprocess, inference,
postprocess, and their sum `processing`) and the frame's age when its label comes out (capture → label).
The first `warmup_frames` frames are classified and scored but left out of the latency figures: they
measure allocation and cache warm-up, not the steady state a robot lives in. At exit it prints
p50/p90/p99 per stage, FPS, dropped frames and, when replaying a labelled test set, its accuracy.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import cv2
from rich.markup import escape
from rich.table import Table

from edgecls.console import console
from edgecls.fileio import atomic_write_json
from edgecls.runtime.classifier import Classifier
from edgecls.runtime.display import Recorder, gui_unavailable
from edgecls.runtime.host import host_info
from edgecls.runtime.overlay import draw_overlay, overlay_lines
from edgecls.runtime.sources import LatestFrameGrabber, ReplaySource, exact_frame_size, open_source
from edgecls.runtime.stats import StageTimer
from edgecls.runtime.webview import WebView

STAGES = ("capture_wait_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "processing_ms", "frame_age_ms")


@dataclass(frozen=True)
class CameraOptions:
    source: str = "0"
    headless: bool = False
    record: str | None = None
    jsonl: str | None = None
    max_frames: int | None = None
    replay_test_set: str | None = None
    data_dir: str | None = None
    frame_size: str = "auto"  # replay: WxH, or "auto": about 640×480, exact for the test images (`exact_frame_size`)
    fps: float = 0.0
    summary_json: str | None = None
    window: str = "edgecls"
    warmup_frames: int = 10
    serve: str | None = None  # HOST:PORT of the live web view


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        from edgecls.errors import ConfigError

        raise ConfigError(f"--frame-size must look like 640x480, got {text!r}") from exc
    return w, h


def _make_source(options: CameraOptions, input_spec: dict, preprocess: dict):
    if options.replay_test_set:
        from edgecls.data import load_for_model

        test = load_for_model(options.replay_test_set, "test", options.data_dir, input_spec, preprocess)
        crop_fraction = preprocess.get("crop_fraction", 1.0)
        size = (exact_frame_size((640, 480), test.images.shape[1], crop_fraction) if options.frame_size == "auto"
                else parse_size(options.frame_size))
        return ReplaySource(test.images, test.labels, size, options.fps, crop_fraction)
    return open_source(options.source)


def parse_address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        from edgecls.errors import ConfigError

        raise ConfigError(f"--serve must look like 127.0.0.1:8080 (HOST:PORT), got {text!r}")
    return host, int(port)


def _open_view(options: CameraOptions, title: str) -> WebView | None:
    if not options.serve:
        return None
    host, port = parse_address(options.serve)
    view = WebView(host, port, title)
    where = "[bold yellow]reachable from the network[/]" if host not in ("127.0.0.1", "localhost", "::1") else "this machine only"
    console.print(f"live view: {view.address} ({where}; video at {view.address}stream.mjpg, numbers at {view.address}stats.json)")
    return view


def _live_stats(pred, timings: dict, fps: float, frames: int, dropped: int, accuracy) -> dict:
    return {"label": f"{pred.label} {pred.confidence:.0%}", "fps": round(fps, 2), "frames": frames, "dropped": dropped,
            **{k: round(v, 3) for k, v in timings.items()},
            "accuracy": f"{accuracy[0]:.2%} of {accuracy[1]}" if accuracy else None}


def _frame_timings(wait_s: float, pred, captured_at: float, done: float) -> dict[str, float]:
    work = pred.timings_ms
    return {"capture_wait_ms": wait_s * 1e3, "preprocess_ms": work["preprocess"], "inference_ms": work["inference"],
            "postprocess_ms": work["postprocess"], "processing_ms": sum(work.values()), "frame_age_ms": (done - captured_at) * 1e3}


def run_camera(clf: Classifier, options: CameraOptions) -> dict:
    source = _make_source(options, clf.bundle.input, clf.bundle.preprocess)
    show = not options.headless
    if show and (reason := gui_unavailable()):
        hint = "" if options.serve else "; watch it from another machine with --serve 0.0.0.0:8080"
        console.print(f"[yellow]no window:[/] {escape(reason)}, so the loop runs headless{hint}")
        show = False
    title = f"{clf.bundle.manifest['model']} {clf.info.name}/{clf.info.device} {clf.info.precision}"
    view = _open_view(options, title)
    grabber = LatestFrameGrabber(source).start()
    timer = StageTimer()
    recorder = Recorder(options.record, getattr(source, "fps", 0.0)) if options.record else None
    log = open(options.jsonl, "w") if options.jsonl else None  # noqa: SIM115 (closed in finally)
    frames = correct = labelled = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    interrupted = False
    try:
        while options.max_frames is None or frames < options.max_frames:
            t0 = time.perf_counter()
            frame = grabber.next_frame()
            if frame is None:
                break
            t1 = time.perf_counter()
            pred = clf.predict(frame.image)
            timings = _frame_timings(t1 - t0, pred, frame.captured_at, time.perf_counter())
            warmup = frames < options.warmup_frames
            if not warmup:
                timer.add(timings)
            frames += 1
            if frame.label is not None:
                labelled += 1
                correct += int(pred.index == frame.label)
            fps = frames / (time.perf_counter() - started)
            if log:
                record = {"frame": frame.index, "time": time.time(), "label": pred.label, "index": pred.index,
                          "confidence": round(pred.confidence, 5), "topk": [[name, round(p, 5)] for name, p in pred.topk],
                          **{k: round(v, 4) for k, v in timings.items()}, "warmup": warmup, "dropped_so_far": grabber.dropped}
                if frame.label is not None:
                    record["true_index"] = frame.label
                if frame.source:
                    record["source"] = frame.source
                log.write(json.dumps(record) + "\n")
            if recorder or show or view:
                accuracy = (correct / labelled, labelled) if labelled else None
                shown = draw_overlay(frame.image.copy(), overlay_lines(pred, timings, fps, grabber.dropped, accuracy))
                if recorder:
                    recorder.write(shown)
                if view:
                    view.publish(shown, _live_stats(pred, timings, fps, frames, grabber.dropped, accuracy))
                if show:
                    cv2.imshow(options.window, shown)
                    if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                        break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        grabber.stop()
        if recorder and (written := recorder.close()):
            console.print(f"recording: {written} ({recorder.frames} frames)")
        if log:
            log.close()
        if view:
            view.close()
        if show:
            cv2.destroyAllWindows()
    elapsed, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    summary = {
        "schema": "edgecls.camera/1", "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": clf.bundle.manifest["model"], "bundle": str(clf.bundle.root), "source": options.replay_test_set or options.source,
        "host": host_info(), "backend": clf.info.to_dict(),
        "frames": frames, "captured": grabber.captured, "dropped": grabber.dropped, "reconnects": grabber.reconnects,
        "wall_s": elapsed, "fps": frames / elapsed if elapsed > 0 else 0.0, "interrupted": interrupted,
        "cpu_ms_per_frame": cpu_s * 1e3 / frames if frames else None,  # the whole process: capture, model, drawing, viewers
        "warmup_frames_excluded": min(frames, options.warmup_frames),
        "latency": timer.summary(),
        "accuracy": (correct / labelled) if labelled else None, "labelled_frames": labelled,
    }
    if isinstance(source, ReplaySource):
        summary["replay"] = {"dataset": options.replay_test_set, "frame_size": "x".join(map(str, source.size)),
                             "resampled": source.resampled,
                             "exact_frame_size": "x".join(map(str, exact_frame_size(source.size, source.images.shape[1],
                                                                                     source.crop_fraction)))}
    _print_summary(summary)
    if options.summary_json:
        from edgecls.plots import latency_cdf

        atomic_write_json(options.summary_json, summary)
        console.print(f"wrote {options.summary_json} and {Path(options.summary_json).with_suffix('.png')}")
        latency_cdf({s: timer.recent(s) for s in ("preprocess_ms", "inference_ms", "processing_ms", "frame_age_ms")},
                          Path(options.summary_json).with_suffix(".png"),
                          title=f"camera loop, {clf.bundle.manifest['model']} {clf.info.name}/{clf.info.device} {clf.info.precision}")
    return summary


def _print_summary(summary: dict) -> None:
    table = Table(title=f"{summary['frames']} frames, {summary['fps']:.1f} FPS, {summary['dropped']} dropped; latency "
                        f"after {summary['warmup_frames_excluded']} warm-up frames")
    for col in ("stage", "p50 ms", "p90 ms", "p99 ms", "mean ms"):
        table.add_column(col)
    for stage in STAGES:
        s = summary["latency"].get(stage)
        if s and s.get("n"):
            table.add_row(stage.removesuffix("_ms"), f"{s['p50']:.3f}", f"{s['p90']:.3f}", f"{s['p99']:.3f}", f"{s['mean']:.3f}")
    console.print(table)
    work = summary["latency"].get("processing_ms", {})
    line = f"frames {summary['frames']}  fps {summary['fps']:.1f}  dropped {summary['dropped']}"
    if work.get("n"):
        age = summary["latency"]["frame_age_ms"]
        line += f"  processing p50 {work['p50']:.3f} ms p99 {work['p99']:.3f} ms  frame age p50 {age['p50']:.3f} ms"
    if summary["cpu_ms_per_frame"] is not None:
        line += f"  CPU {summary['cpu_ms_per_frame']:.2f} ms/frame"
    if summary["accuracy"] is not None:
        line += f"  accuracy {summary['accuracy']:.2%} on {summary['labelled_frames']} labelled frames"
        replay = summary.get("replay")
        if replay and replay["resampled"]:
            line += (f" (RESAMPLED: frame size {replay['frame_size']} is no whole multiple of the image size, so the model "
                     f"does not see the test images exactly; --frame-size {replay['exact_frame_size']} or auto would)")
    console.print(line, soft_wrap=True)
