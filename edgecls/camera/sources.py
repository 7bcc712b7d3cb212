"""Frame sources for the camera loop, and the capture thread that keeps only the newest frame.

`open_source` understands the sources of `video_uri`: a Jetson CSI camera (csi://0), a V4L2 camera
(v4l2:///dev/video0, /dev/video0 or its index "0"), an rtsp:// or http(s):// URL, a GStreamer pipeline
(anything containing "!"), a video file and a directory of images. `ReplaySource` streams a labelled test set
as camera-sized frames, for accuracy next to latency.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from edgecls.camera.video_uri import VideoURI, gstreamer_missing, parse_source
from edgecls.errors import SourceError
from edgecls.imaging import IMAGE_SUFFIXES, center_box


@dataclass
class Frame:
    image: np.ndarray
    index: int
    captured_at: float
    label: int | None = None
    source: str | None = None  # the file an image directory's frame came from


class FrameSource(Protocol):
    """What `LatestFrameGrabber` reads: `VideoSource`, `ImageDirSource`, `ReplaySource`, or a robot's own source.
    `read` gives (image, label), or (None, None) at the end or on a failure; a `live` source is then reopened
    with its `reopen()`. `fps` > 0 paces a recorded source to its rate."""

    live: bool
    fps: float

    def read(self) -> tuple[np.ndarray | None, int | None]: ...
    def close(self) -> None: ...


OPEN_TIMEOUT_S = 15.0  # a CSI camera's Argus session takes 1-3 s to start; a stream's first connect a few


class VideoSource:
    """cv2.VideoCapture around a camera, file, URL or GStreamer pipeline (`video_uri.parse_source`).

    A live source is opened in a helper thread and given `open_timeout_s`: OpenCV's open blocks, with no timeout of
    its own, on a GStreamer pipeline that never starts (an Argus daemon that is down) or a stream that never
    answers; the thread is left behind and the error names the source."""

    def __init__(self, spec: str | VideoURI, open_timeout_s: float = OPEN_TIMEOUT_S):
        self.uri = spec if isinstance(spec, VideoURI) else parse_source(spec)
        self.spec = self.uri.source
        self.live = self.uri.live
        self.open_timeout_s = open_timeout_s
        missing = gstreamer_missing(self.uri)
        if missing:
            raise SourceError(f"cannot open {self.spec!r}: {missing}")
        self.cap = self._open()
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        self.fps = fps if not self.live and fps and fps > 0 else 0.0

    def _open(self) -> cv2.VideoCapture:
        cap = self._capture() if self.uri.live else cv2.VideoCapture(self.uri.target, getattr(cv2, self.uri.api_name))
        if not cap.isOpened():
            how = f"{self.uri.kind} via OpenCV {self.uri.api_name.removeprefix('CAP_')}"
            detail = f": {self.uri.target}" if self.uri.kind == "csi" else ""
            raise SourceError(
                f"cannot open video source {self.spec!r} ({how}{detail}); check that the device or stream "
                "exists and is not held by another process (`edgecls doctor` lists what this OpenCV opens)"
            )
        return cap

    def _capture(self) -> cv2.VideoCapture:
        opened: list[cv2.VideoCapture] = []
        opener = threading.Thread(
            target=lambda: opened.append(cv2.VideoCapture(self.uri.target, getattr(cv2, self.uri.api_name))),
            name="edgecls-open-source",
            daemon=True,
        )
        opener.start()
        opener.join(self.open_timeout_s)
        if not opened:
            hint = (
                "the camera did not start: check `sudo systemctl status nvargus-daemon` (restart it if it failed) "
                "and that no other process holds the sensor"
                if self.uri.kind == "csi"
                else "check that the device, stream or pipeline delivers frames"
            )
            raise SourceError(f"video source {self.spec!r} did not open within {self.open_timeout_s:g} s: {hint}")
        return opened[0]

    def read(self) -> tuple[np.ndarray | None, int | None]:
        ok, image = self.cap.read()
        return (image if ok else None), None

    def reopen(self) -> None:
        self.cap.release()
        self.cap = self._open()

    def close(self) -> None:
        self.cap.release()


class ImageDirSource:
    live = False

    def __init__(self, folder: str):
        self.paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.paths:
            raise SourceError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
        self.position = 0
        self.fps = 0.0
        self.current: str | None = None

    def read(self) -> tuple[np.ndarray | None, int | None]:
        while self.position < len(self.paths):
            path = self.paths[self.position]
            self.position += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                self.current = str(path)
                return image, None
        return None, None

    def close(self) -> None:
        pass


def exact_frame_size(near: tuple[int, int], image_size: int, crop_fraction: float = 1.0) -> tuple[int, int]:
    """The frame size closest to `near` (w, h), same aspect, whose centre crop is a whole multiple of `image_size`:
    replayed there, the model sees each test image exactly (640×480 is exact for 32-pixel images, not for 28)."""
    w, h = near
    for delta in range(max(h, image_size) * 2):
        for height in (h - delta, h + delta):
            width = round(height * w / h)
            if height >= image_size and center_box(height, width, crop_fraction)[2] % image_size == 0:
                return width, height
    return w, h


class ReplaySource:
    """A labelled test set as BGR frames of `size` (w, h), each image placed where the runtime's centre crop looks.

    Images are a dataset fitted to the model (`load_for_model`), RGB or grey. When the crop's side in the frame
    (`crop_fraction` of its short side) is a whole multiple of the image size, the image is enlarged by that factor
    with nearest-neighbour copies, which the runtime's area reduction inverts exactly: the model sees the test image
    itself, and replay accuracy equals `edgecls eval`'s. Other sizes are resampled (bilinear) and `resampled` says so.
    """

    live = False

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        size: tuple[int, int],
        fps: float = 0.0,
        crop_fraction: float = 1.0,
    ):
        self.images, self.labels, self.size, self.fps = images, labels, size, fps
        self.position, self.crop_fraction = 0, crop_fraction
        self.box = center_box(size[1], size[0], crop_fraction)
        self.resampled = self.box[2] % images.shape[1] != 0 or images.shape[1] != images.shape[2]

    def read(self) -> tuple[np.ndarray | None, int | None]:
        if self.position >= len(self.labels):
            return None, None
        image, label = self.images[self.position], int(self.labels[self.position])
        self.position += 1
        w, h = self.size
        top, left, side = self.box
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.shape[2] == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        frame = np.zeros((h, w, 3), dtype=np.uint8)
        interpolation = cv2.INTER_LINEAR if self.resampled else cv2.INTER_NEAREST
        frame[top : top + side, left : left + side] = cv2.resize(bgr, (side, side), interpolation=interpolation)
        return frame, label

    def close(self) -> None:
        pass


def open_source(spec: str) -> FrameSource:
    uri = parse_source(spec)
    if uri.kind == "directory":
        return ImageDirSource(str(uri.target))
    return VideoSource(uri)


class LatestFrameGrabber:
    """Reads a source in its own thread and keeps only the newest frame.

    A frame that is replaced before the loop took it counts as dropped: the loop never works through a
    backlog of stale frames. Sources with a rate (video files, `fps` replays) are paced to it, as a camera
    would be; sources without one (image directories, unpaced replays) wait for the loop, so none drop.
    Live sources that fail are reopened with exponential back-off, each attempt reported to `on_reconnect` (the
    camera loop prints it: a robot's operator must see a camera that drops); the stream ends after `max_reconnects`
    failures in a row (a frame read resets the count, so a camera that glitches now and then lives on).
    `end_reason` says why the capture stopped. `stop()` interrupts a back-off at once and joins the thread before it
    releases the source.
    """

    def __init__(
        self,
        source: FrameSource,
        max_reconnects: int = 10,
        backoff_s: float = 0.5,
        on_reconnect: Callable[[str], None] | None = None,
    ):
        self.source = source
        self.max_reconnects = max_reconnects
        self.backoff_s = backoff_s
        self.paced = source.live or source.fps > 0
        self.cond = threading.Condition()
        self.latest: Frame | None = None
        self.finished = False
        self.error: Exception | None = None
        self.dropped = 0
        self.captured = 0
        self.reconnects = 0
        self.failures = 0
        self.end_reason: str | None = None
        self.on_reconnect = on_reconnect
        self._stop = threading.Event()
        self._source_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="edgecls-capture", daemon=True)

    def start(self) -> LatestFrameGrabber:
        self.thread.start()
        return self

    def _run(self) -> None:
        interval = 1.0 / self.source.fps if getattr(self.source, "fps", 0) else 0.0
        next_due = time.perf_counter()
        try:
            while not self._stop.is_set():
                image, label = self.source.read()
                if image is None:
                    if self.source.live and self._reconnect():
                        continue
                    if not self._stop.is_set():
                        self.end_reason = (
                            f"source lost: no frame after {self.failures} attempts to reopen it"
                            if self.source.live
                            else "source ended"
                        )
                    break
                self.failures = 0
                if interval:
                    next_due += interval
                    time.sleep(max(0.0, next_due - time.perf_counter()))
                with self.cond:
                    if not self.paced:
                        self.cond.wait_for(lambda: self.latest is None or self._stop.is_set())
                    if self._stop.is_set():
                        break
                    if self.latest is not None:
                        self.dropped += 1
                    self.latest = Frame(
                        image, self.captured, time.perf_counter(), label, getattr(self.source, "current", None)
                    )
                    self.captured += 1
                    self.cond.notify_all()
        except Exception as exc:  # surfaced to the loop by `next_frame`
            self.error = exc
            self.end_reason = f"capture failed: {exc}"
        finally:
            with self.cond:
                self.finished = True
                self.cond.notify_all()

    def _reconnect(self) -> bool:
        while self.failures < self.max_reconnects:
            delay = min(10.0, self.backoff_s * 2**self.failures)
            self.failures += 1
            if self.on_reconnect is not None:
                self.on_reconnect(
                    f"no frame from {getattr(self.source, 'spec', 'the source')!r} after {self.captured} frames: "
                    f"reopening in {delay:g} s (attempt {self.failures} of {self.max_reconnects})"
                )
            if self._stop.wait(delay):
                return False
            with self._source_lock:
                if self._stop.is_set():
                    return False
                try:
                    self.source.reopen()
                except SourceError:
                    continue
            self.reconnects += 1
            return True
        return False

    def next_frame(self) -> Frame | None:
        """The newest unseen frame, or None once the source has ended."""
        with self.cond:
            while self.latest is None and not self.finished:
                self.cond.wait(timeout=0.5)  # short waits keep Ctrl-C responsive
            if self.error:
                raise SourceError(f"capture failed: {self.error}") from self.error
            frame, self.latest = self.latest, None
            self.cond.notify_all()
            return frame

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self.cond:
            self.cond.notify_all()
        if self.thread.ident is not None:
            self.thread.join(timeout)
        with self._source_lock:  # a thread still stuck in a blocking read is released by closing its device
            self.source.close()
        if self.thread.is_alive():
            self.thread.join(timeout)
