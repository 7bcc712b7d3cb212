import json
import time

import cv2
import numpy as np
import pytest

from edgecls.errors import SourceError
from edgecls.runtime import Classifier
from edgecls.runtime.camera import CameraOptions, run_camera
from edgecls.runtime.sources import LatestFrameGrabber, ReplaySource


@pytest.fixture(scope="module")
def clf(bundle_dir):
    return Classifier.load(bundle_dir, backend="onnxruntime", precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 200.0, (640, 480))
    assert writer.isOpened()
    for i in range(40):
        frame = np.full((480, 640, 3), (i * 6) % 256, np.uint8)
        cv2.circle(frame, (320, 240), 50 + i, (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def test_headless_on_a_video_writes_jsonl_and_summary(clf, video, tmp_path):
    log = tmp_path / "frames.jsonl"
    summary = run_camera(clf, CameraOptions(source=str(video), headless=True, jsonl=str(log),
                                            summary_json=str(tmp_path / "summary.json"), record=str(tmp_path / "out.mp4")))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert summary["frames"] == len(records) > 0
    assert summary["frames"] + summary["dropped"] == summary["captured"] == 40
    assert set(records[0]["ms"]) == {"capture_wait", "preprocess", "inference", "postprocess", "total"}
    for stage in ("preprocess", "inference", "total"):
        assert summary["latency_ms"][stage]["p50"] <= summary["latency_ms"][stage]["p99"]
    assert (tmp_path / "summary.png").stat().st_size > 0
    assert cv2.VideoCapture(str(tmp_path / "out.mp4")).isOpened()


def test_image_directory_classifies_every_image(clf, tmp_path, cifar_root):
    from edgecls.data import load_dataset

    test = load_dataset("cifar10", "test", cifar_root)
    for i in range(12):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), cv2.cvtColor(test.images[i], cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    summary = run_camera(clf, CameraOptions(source=str(tmp_path), headless=True, max_frames=100))
    assert summary["frames"] == 12 and summary["dropped"] == 0


def test_replay_reports_accuracy_next_to_latency(clf, cifar_root, capsys):
    summary = run_camera(clf, CameraOptions(replay_test_set="cifar10", data_dir=str(cifar_root), headless=True, max_frames=60))
    assert summary["frames"] == 60 and summary["labelled_frames"] == 60
    assert summary["accuracy"] >= 0.8
    assert "accuracy" in capsys.readouterr().err


class SlowBackend:
    """Wraps a classifier and makes every inference take 20 ms: the capture thread outruns it."""

    def __init__(self, clf):
        self.clf = clf

    def __getattr__(self, name):
        return getattr(self.clf, name)

    def predict(self, frame, color="bgr"):
        time.sleep(0.02)
        return self.clf.predict(frame, color)


def test_stale_frames_are_dropped_not_queued(clf, cifar_root):
    from edgecls.data import load_dataset

    test = load_dataset("cifar10", "test", cifar_root)
    slow = SlowBackend(clf)
    options = CameraOptions(replay_test_set="cifar10", data_dir=str(cifar_root), headless=True, fps=500.0, max_frames=15)
    summary = run_camera(slow, options)
    assert summary["frames"] == 15
    assert summary["dropped"] > 15  # 500 fps source, 50 fps consumer
    assert summary["latency_ms"]["capture_wait"]["p50"] < 5  # a fresh frame is always waiting
    grabber = LatestFrameGrabber(ReplaySource(test.images[:5], test.labels[:5], (64, 48))).start()
    indices = []
    while (frame := grabber.next_frame()) is not None:
        indices.append(frame.index)
    grabber.stop()
    assert indices == [0, 1, 2, 3, 4]  # an unpaced source waits for the loop instead of dropping


def test_unopenable_sources_say_why(clf, tmp_path):
    with pytest.raises(SourceError, match="neither a device index"):
        run_camera(clf, CameraOptions(source=str(tmp_path / "missing.mp4"), headless=True))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no images"):
        run_camera(clf, CameraOptions(source=str(tmp_path / "empty"), headless=True))


class FlakyLiveSource:
    """A live source that drops after 3 frames, fails to reopen once, then delivers 3 more and ends."""

    live, fps = True, 0.0

    def __init__(self):
        self.sent, self.opens, self.closed = 0, 0, False

    def read(self):
        if self.sent in (3, 6) and self.opens < (1 if self.sent == 3 else 99):
            return None, None
        if self.sent >= 6:
            return None, None
        self.sent += 1
        return np.full((48, 64, 3), self.sent * 20, np.uint8), None

    def reopen(self):
        self.opens += 1
        if self.opens == 1:
            raise SourceError("camera still unplugged")

    def close(self):
        self.closed = True


def test_live_source_reconnects_with_backoff():
    source = FlakyLiveSource()
    grabber = LatestFrameGrabber(source, max_reconnects=5, backoff_s=0.01).start()
    frames = []
    while (frame := grabber.next_frame()) is not None:
        frames.append(frame)
        time.sleep(0.005)
    grabber.stop()
    assert grabber.reconnects >= 2 and source.opens >= 2 and source.closed
    assert grabber.captured == 6 and len(frames) + grabber.dropped == 6
