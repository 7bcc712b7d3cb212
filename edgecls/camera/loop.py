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
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
from rich.markup import escape
from rich.table import Table

from edgecls.camera.options import CameraOptions
from edgecls.camera.outputs import gui_unavailable, open_output, rtp_receiver
from edgecls.camera.overlay import draw_overlay, overlay_lines
from edgecls.camera.sources import LatestFrameGrabber, ReplaySource, exact_frame_size, open_source
from edgecls.camera.stats import StageTimer
from edgecls.camera.webview import WebView
from edgecls.console import console
from edgecls.errors import ConfigError, OutputError
from edgecls.fileio import atomic_write_json
from edgecls.imaging import Policy
from edgecls.options import LOOPBACK, parse_address, parse_size
from edgecls.runtime.classifier import Classifier
from edgecls.runtime.decision import Decider, Decision
from edgecls.runtime.host import host_info

STAGES = ("capture_wait_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "processing_ms", "frame_age_ms")


def _make_source(options: CameraOptions, policy: Policy, replay):
    if options.replay_test_set:
        if replay is None:
            raise ConfigError(
                f"--replay-test-set {options.replay_test_set}: pass its test split, fitted to the model, as "
                "run_camera(..., replay=edgecls.data.load_for_model(NAME, 'test', DATA_DIR, bundle.input, "
                "bundle.preprocess))"
            )
        crop_fraction = policy.crop_fraction
        size = (
            exact_frame_size((640, 480), replay.images.shape[1], crop_fraction)
            if options.frame_size == "auto"
            else parse_size(options.frame_size)
        )
        return ReplaySource(replay.images, replay.labels, size, options.fps, crop_fraction)
    return open_source(options.source)


def _open_view(options: CameraOptions, title: str) -> WebView | None:
    if not options.serve:
        return None
    host, port = parse_address(options.serve)
    view = WebView(host, port, title)
    where = "[bold yellow]reachable from the network[/]" if host not in LOOPBACK else "this machine only"
    console.print(
        f"live view: {view.address} ({where}; video at {view.address}stream.mjpg, numbers at {view.address}stats.json)"
    )
    return view


@dataclass
class _Tally:
    """Frames classified so far, how many the bundle called unknown and, for labelled frames, how many were right."""

    started: float = field(default_factory=time.perf_counter)
    cpu_started: float = field(default_factory=time.process_time)
    frames: int = 0
    unknown: int = 0
    labelled: int = 0
    correct: int = 0

    def start(self) -> None:
        self.started, self.cpu_started = time.perf_counter(), time.process_time()

    def count(self, frame, pred) -> None:
        self.frames += 1
        self.unknown += int(pred.unknown)
        if frame.label is not None:
            self.labelled += 1
            self.correct += int(pred.index == frame.label)

    @property
    def fps(self) -> float:
        return self.frames / (time.perf_counter() - self.started)

    @property
    def accuracy(self) -> tuple[float, int] | None:
        return (self.correct / self.labelled, self.labelled) if self.labelled else None


@dataclass
class _Outputs:
    """Where each classified frame goes besides the summary: the JSONL log, the --output files and streams, the web
    view, the window. Opened on an ExitStack, so whatever was opened is closed however the loop ends."""

    classes: tuple[str, ...]
    rule: str
    log: Any = None
    writers: list = field(default_factory=list)
    view: WebView | None = None
    window: str | None = None

    @classmethod
    def open(
        cls, options: CameraOptions, show: bool, title: str, source_fps: float, classes, rule: str, stack: ExitStack
    ) -> _Outputs:
        outputs = cls(tuple(classes), rule, window=options.window if show else None)
        if options.jsonl:
            outputs.log = stack.enter_context(open(options.jsonl, "w"))
        for spec in options.output_specs:
            if spec.kind == "display":
                continue
            writer = open_output(spec, source_fps)
            outputs.writers.append(writer)
            stack.callback(outputs._close, writer)
            if spec.kind == "rtp":
                console.print(f"streaming {spec.uri}; receive it with: gst-launch-1.0 {rtp_receiver(spec)}")
        outputs.view = _open_view(options, title)
        if outputs.view:
            stack.callback(outputs.view.close)
        if show:
            stack.callback(cv2.destroyAllWindows)
        return outputs

    @staticmethod
    def _close(writer) -> None:
        if written := writer.close():
            console.print(f"video: {written} ({writer.frames} frames)")

    def draw(self, frame, pred, decision: Decision, timings: dict, tally: _Tally, dropped: int) -> bool:
        """The overlaid frame to the outputs, web view and window; False when q or Esc was pressed there."""
        if not (self.writers or self.view or self.window):
            return True
        fps, accuracy = tally.fps, tally.accuracy
        truth = self.classes[frame.label] if frame.label is not None else None
        lines = overlay_lines(pred, timings, fps, dropped, accuracy, decision.describe(), truth)
        shown = draw_overlay(frame.image.copy(), lines)
        for writer in self.writers:
            writer.write(shown)
        if self.view:
            stats = _live_stats(frame, pred, decision, truth, timings, fps, tally.frames, dropped, accuracy)
            self.view.publish(shown, {**stats, "rule": self.rule})
        if self.window:
            cv2.imshow(self.window, shown)
            return cv2.waitKey(1) & 0xFF not in (27, ord("q"))
        return True

    def finish(self, summary: dict) -> None:
        if self.view:
            self.view.finish(_page_summary(summary))


def _live_stats(frame, pred, decision: Decision, truth, timings: dict, fps, frames, dropped, accuracy) -> dict:
    stats = {
        "frame": frame.index,
        "label": f"{pred.label} {pred.confidence:.0%}" + (" (unknown?)" if pred.unknown else ""),
        "decision": decision.describe(),
        "fps": round(fps, 2),
        "frames": frames,
        "dropped": dropped,
        **{k: round(v, 3) for k, v in timings.items()},
        "accuracy": f"{accuracy[0]:.2%} of {accuracy[1]}" if accuracy else None,
    }
    if truth is not None:
        stats["truth"] = truth + (" ✓" if pred.index == frame.label else " ✗")
    return stats


def _page_summary(summary: dict) -> dict:
    """The final summary as the page shows it, kept there after the loop has ended."""
    page = {k: summary[k] for k in ("frames", "dropped", "source_end") if summary.get(k) is not None}
    page["fps"] = round(summary["fps"], 2)
    if summary["accuracy"] is not None:
        page["accuracy"] = f"{summary['accuracy']:.2%} of {summary['labelled_frames']}"
    for stage, key in (("processing_ms", "processing"), ("frame_age_ms", "frame_age")):
        s = summary["latency"].get(stage)
        if s and s.get("n"):
            page[key] = f"{s['p50']:.2f} / {s['p99']:.2f}"
    if summary["interrupted"]:
        page["source_end"] = "interrupted (Ctrl-C)"
    return page


def _frame_timings(wait_s: float, pred, captured_at: float, done: float) -> dict[str, float]:
    work = pred.timings_ms
    return {
        "capture_wait_ms": wait_s * 1e3,
        "preprocess_ms": work["preprocess"],
        "inference_ms": work["inference"],
        "postprocess_ms": work["postprocess"],
        "processing_ms": sum(work.values()),
        "frame_age_ms": (done - captured_at) * 1e3,
    }


def _log_record(frame, pred, decision: Decision, timings: dict, warmup: bool, dropped: int) -> dict:
    record = {
        "frame": frame.index,
        "time": time.time(),
        "label": pred.label,
        "index": pred.index,
        "confidence": round(pred.confidence, 5),
        "unknown": pred.unknown,
        "topk": [[name, round(p, 5)] for name, p in pred.topk],
        "decision": decision.label,
        "decision_votes": decision.votes,
        **{k: round(v, 4) for k, v in timings.items()},
        "warmup": warmup,
        "dropped_so_far": dropped,
    }
    if frame.label is not None:
        record["true_index"] = frame.label
    if frame.source:
        record["source"] = frame.source
    return record


def _window_possible(options: CameraOptions) -> bool:
    asked = any(spec.kind == "display" for spec in options.output_specs)
    if options.headless:
        return False
    if (reason := gui_unavailable()) and asked:
        raise OutputError(f"--output display://: {reason}; stream the view instead (--output rtp://HOST:PORT, --serve)")
    if reason:
        hint = "" if options.serve else "; watch it from another machine with --serve 0.0.0.0:8080"
        console.print(f"[yellow]no window:[/] {escape(reason)}, so the loop runs headless{hint}")
        return False
    return True


def run_camera(clf: Classifier, options: CameraOptions, replay=None) -> dict:
    """Classify the newest frame of the source, over and over, until the source ends, --max-frames, q/Esc in the
    window or Ctrl-C; then print, return and (with --json) write the summary. With --replay-test-set, `replay` is that
    test split as the caller loaded it (an `ImageSet` fitted to the model): the camera loads no datasets."""
    show = _window_possible(options)
    source = _make_source(options, clf.bundle.preprocess, replay)
    title = f"{clf.bundle.manifest.model} {clf.info.name}/{clf.info.device} {clf.info.precision}"
    timer, tally, decider = StageTimer(), _Tally(), Decider.parse(options.vote)
    with ExitStack() as stack:
        grabber = LatestFrameGrabber(
            source, on_reconnect=lambda message: console.print(f"[yellow]camera:[/] {escape(message)}")
        ).start()
        stack.callback(grabber.stop)
        fps = getattr(source, "fps", 0.0)
        outputs = _Outputs.open(options, show, title, fps, clf.bundle.manifest.classes, decider.rule, stack)
        interrupted = _classify_frames(clf, grabber, options, outputs, decider, timer, tally)
        summary = _summary(clf, options, source, grabber, timer, tally, interrupted)
        summary["decision_rule"] = decider.rule
        outputs.finish(summary)
    _print_summary(summary)
    if options.summary_json:
        _write_summary(summary, timer, options.summary_json, f"camera loop, {title}")
    return summary


def _classify_frames(
    clf, grabber, options: CameraOptions, outputs: _Outputs, decider: Decider, timer: StageTimer, tally: _Tally
) -> bool:
    """The loop itself; True when Ctrl-C ended it."""
    tally.start()
    try:
        while options.max_frames is None or tally.frames < options.max_frames:
            waited_from = time.perf_counter()
            frame = grabber.next_frame()
            if frame is None:
                return False
            got_at = time.perf_counter()
            pred = clf.predict(frame.image)
            decision = decider.update(pred)
            timings = _frame_timings(got_at - waited_from, pred, frame.captured_at, time.perf_counter())
            warmup = tally.frames < options.warmup_frames
            if not warmup:
                timer.add(timings)
            tally.count(frame, pred)
            if outputs.log:
                record = _log_record(frame, pred, decision, timings, warmup, grabber.dropped)
                outputs.log.write(json.dumps(record) + "\n")
            if not outputs.draw(frame, pred, decision, timings, tally, grabber.dropped):
                return False
    except KeyboardInterrupt:
        return True
    return False


def _summary(clf, options: CameraOptions, source, grabber, timer: StageTimer, tally: _Tally, interrupted: bool) -> dict:
    elapsed, frames = time.perf_counter() - tally.started, tally.frames
    cpu_s = time.process_time() - tally.cpu_started
    summary = {
        "schema": "edgecls.camera/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": clf.bundle.manifest.model,
        "bundle": str(clf.bundle.root),
        "source": options.replay_test_set or options.source,
        "host": host_info(),
        "backend": clf.info.to_dict(),
        "frames": frames,
        "captured": grabber.captured,
        "dropped": grabber.dropped,
        "reconnects": grabber.reconnects,
        "source_end": grabber.end_reason,
        "wall_s": elapsed,
        "fps": frames / elapsed if elapsed > 0 else 0.0,
        "interrupted": interrupted,
        "cpu_ms_per_frame": cpu_s * 1e3 / frames if frames else None,  # the whole process: capture, model, drawing
        "warmup_frames_excluded": min(frames, options.warmup_frames),
        "latency": timer.summary(),
        "accuracy": tally.correct / tally.labelled if tally.labelled else None,
        "labelled_frames": tally.labelled,
        "called_unknown": tally.unknown / frames if frames else None,
    }
    if isinstance(source, ReplaySource):
        exact = exact_frame_size(source.size, source.images.shape[1], source.crop_fraction)
        summary["replay"] = {
            "dataset": options.replay_test_set,
            "corruption": options.corruption,
            "frame_size": "x".join(map(str, source.size)),
            "resampled": source.resampled,
            "exact_frame_size": "x".join(map(str, exact)),
        }
    return summary


def _write_summary(summary: dict, timer: StageTimer, path: str, title: str) -> None:
    from edgecls.plots import latency_cdf, missing

    atomic_write_json(path, summary)
    no_png = missing()
    if no_png:
        console.print(f"wrote {path}; {no_png}")
        return
    picture = Path(path).with_suffix(".png")
    stages = ("preprocess_ms", "inference_ms", "processing_ms", "frame_age_ms")
    latency_cdf({s: timer.recent(s) for s in stages}, picture, title=title)
    console.print(f"wrote {path} and {picture}")


def _print_summary(summary: dict) -> None:
    table = Table(
        title=f"{summary['frames']} frames, {summary['fps']:.1f} FPS, {summary['dropped']} dropped; latency "
        f"after {summary['warmup_frames_excluded']} warm-up frames"
    )
    for col in ("stage", "p50 ms", "p90 ms", "p99 ms", "mean ms"):
        table.add_column(col)
    for stage in STAGES:
        s = summary["latency"].get(stage)
        if s and s.get("n"):
            table.add_row(
                stage.removesuffix("_ms"), f"{s['p50']:.3f}", f"{s['p90']:.3f}", f"{s['p99']:.3f}", f"{s['mean']:.3f}"
            )
    console.print(table)
    work = summary["latency"].get("processing_ms", {})
    line = f"frames {summary['frames']}  fps {summary['fps']:.1f}  dropped {summary['dropped']}"
    if summary["reconnects"]:
        line += f"  reconnects {summary['reconnects']}"
    if summary["source_end"]:
        line += f"  ({summary['source_end']})"
    if work.get("n"):
        age = summary["latency"]["frame_age_ms"]
        line += f"  processing p50 {work['p50']:.3f} ms p99 {work['p99']:.3f} ms  frame age p50 {age['p50']:.3f} ms"
    if summary["cpu_ms_per_frame"] is not None:
        line += f"  CPU {summary['cpu_ms_per_frame']:.2f} ms/frame"
    if summary["called_unknown"] is not None:
        line += f"  called unknown {summary['called_unknown']:.2%}"
    if summary["accuracy"] is not None:
        line += f"  accuracy {summary['accuracy']:.2%} on {summary['labelled_frames']} labelled frames"
        replay = summary.get("replay")
        if replay and replay["resampled"]:
            line += (
                f" (RESAMPLED: frame size {replay['frame_size']} is no whole multiple of the image size, so the model "
                f"does not see the test images exactly; --frame-size {replay['exact_frame_size']} or auto would)"
            )
    console.print(line, soft_wrap=True)
