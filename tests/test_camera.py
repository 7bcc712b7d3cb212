import json
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from synthetic import CLASSES as CIFAR10_CLASSES
from synthetic import run_replay, write_cifar10

from edgecls.camera.loop import CameraOptions, run_camera
from edgecls.camera.sources import LatestFrameGrabber, ReplaySource, VideoSource
from edgecls.errors import SourceError
from edgecls.runtime import Classifier


@pytest.fixture(scope="module")
def clf(bundle_dir):
    return Classifier.load(bundle_dir, backend="onnxruntime", precision="fp32", device="cpu")


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """40 frames at 25 fps: a file is played at its own rate, and 40 ms a frame leaves even a loaded 2-core machine
    time to classify most of them (at 200 fps a slow run classified fewer than the tests take)."""
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (640, 480))
    assert writer.isOpened()
    for i in range(40):
        frame = np.full((480, 640, 3), (i * 6) % 256, np.uint8)
        cv2.circle(frame, (320, 240), 50 + i, (0, 0, 255), -1)
        writer.write(frame)
    writer.release()
    return path


def test_headless_on_a_video_writes_jsonl_and_summary(clf, video, tmp_path):
    log = tmp_path / "frames.jsonl"
    summary = run_camera(
        clf,
        CameraOptions(
            source=str(video),
            headless=True,
            jsonl=str(log),
            summary_json=str(tmp_path / "summary.json"),
            record=str(tmp_path / "out.mp4"),
        ),
    )
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert summary["frames"] == len(records) > 10
    assert summary["frames"] + summary["dropped"] == summary["captured"] == 40
    stages = {"capture_wait_ms", "preprocess_ms", "inference_ms", "postprocess_ms", "processing_ms", "frame_age_ms"}
    assert stages <= set(records[0]) and set(summary["latency"]) == stages
    assert [r["warmup"] for r in records] == [True] * 10 + [False] * (len(records) - 10)
    assert summary["warmup_frames_excluded"] == 10
    assert all(s["n"] == len(records) - 10 for s in summary["latency"].values())
    for r in records:
        work = r["preprocess_ms"] + r["inference_ms"] + r["postprocess_ms"]
        assert r["processing_ms"] == pytest.approx(work, abs=1e-3)
        assert r["frame_age_ms"] >= r["processing_ms"]  # a label is never younger than the work that made it
        assert len(r["topk"]) == 5 and r["topk"][0][0] == r["label"]
    assert (tmp_path / "summary.png").stat().st_size > 0
    assert cv2.VideoCapture(str(tmp_path / "out.mp4")).isOpened()


def test_image_directory_classifies_every_image(clf, tmp_path, cifar_root):
    from edgecls.data import load_dataset

    test = load_dataset("cifar10", "test", cifar_root)
    for i in range(12):
        cv2.imwrite(str(tmp_path / f"{i:03d}.png"), cv2.cvtColor(test.images[i], cv2.COLOR_RGB2BGR))
    (tmp_path / "notes.txt").write_text("not an image")
    log = tmp_path / "log" / "frames.jsonl"
    log.parent.mkdir()
    summary = run_camera(clf, CameraOptions(source=str(tmp_path), headless=True, max_frames=100, jsonl=str(log)))
    assert summary["frames"] == 12 and summary["dropped"] == 0
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [Path(r["source"]).name for r in records] == [f"{i:03d}.png" for i in range(12)]  # joinable to the images
    assert all(len(r["topk"]) == 5 and r["time"] > 1.7e9 for r in records)


@pytest.mark.parametrize("frame_size", ["640x480", "320x320", "96x128"])
def test_replay_scores_exactly_what_eval_scores(clf, cifar_root, frame_size, capsys, tmp_path):
    """Frames whose short side is a multiple of 32 carry the test image exactly: replay top-1 == eval top-1, the
    share called unknown is eval's (within one frame: a batch of one may round differently from eval's batch), and
    every frame's confidence is the one the same image gets in eval's batch."""
    from edgecls.confidence import calibrated
    from edgecls.data import load_dataset
    from edgecls.evaluate import evaluate_classifier

    test = load_dataset("cifar10", "test", cifar_root)
    log = tmp_path / "replay.jsonl"
    summary = run_replay(
        clf,
        CameraOptions(
            replay_test_set="cifar10", data_dir=str(cifar_root), headless=True, frame_size=frame_size, jsonl=str(log)
        ),
    )
    assert summary["labelled_frames"] == len(test) == 200
    assert summary["replay"]["resampled"] is False
    report = evaluate_classifier(clf, test, ood=test)
    assert summary["accuracy"] == report["top1"]
    assert summary["called_unknown"] == pytest.approx(report["ood"]["known_called_unknown"], abs=1.5 / len(test))
    logits = clf.infer(clf.preprocessor.batch_from_images(test.images))
    probs = calibrated(logits, clf.temperature, clf.beta)[np.arange(len(logits)), logits.argmax(1)]
    confidences = [json.loads(line)["confidence"] for line in log.read_text().splitlines()]
    assert np.abs(np.array(confidences) - probs).max() < 1e-4
    assert "RESAMPLED" not in capsys.readouterr().err


def test_replay_frames_reach_the_model_as_the_test_images(clf, cifar_root):
    from edgecls.data import load_dataset

    test = load_dataset("cifar10", "test", cifar_root)
    expected = clf.preprocessor.batch_from_images(test.images[:20])
    for size, exact in (((640, 480), True), ((1920, 1088), True), ((1280, 720), False)):
        source = ReplaySource(test.images[:20], test.labels[:20], size)
        got = np.concatenate([clf.preprocessor(source.read()[0]) for _ in range(20)])
        assert source.resampled is not exact
        assert bool(np.abs(got - expected).max() == 0) is exact


def test_resampled_replay_says_so(clf, cifar_root, capsys):
    summary = run_replay(
        clf,
        CameraOptions(
            replay_test_set="cifar10", data_dir=str(cifar_root), headless=True, frame_size="300x200", max_frames=20
        ),
    )
    assert summary["replay"]["resampled"] is True
    assert "RESAMPLED" in capsys.readouterr().err


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
    options = CameraOptions(
        replay_test_set="cifar10", data_dir=str(cifar_root), headless=True, fps=500.0, max_frames=15
    )
    summary = run_replay(slow, options)
    assert summary["frames"] == 15
    assert summary["dropped"] > 15  # 500 fps source, 50 fps consumer
    assert summary["latency"]["capture_wait_ms"]["p50"] < 5  # a fresh frame is always waiting
    grabber = LatestFrameGrabber(ReplaySource(test.images[:5], test.labels[:5], (64, 48))).start()
    indices = []
    while (frame := grabber.next_frame()) is not None:
        indices.append(frame.index)
    grabber.stop()
    assert indices == [0, 1, 2, 3, 4]  # an unpaced source waits for the loop instead of dropping


def test_unopenable_sources_say_why(clf, tmp_path):
    with pytest.raises(SourceError, match=r"is not a camera \(N, csi://N, v4l2:///dev/videoN\)"):
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
    said: list[str] = []
    grabber = LatestFrameGrabber(source, max_reconnects=5, backoff_s=0.01, on_reconnect=said.append).start()
    frames = []
    while (frame := grabber.next_frame()) is not None:
        frames.append(frame)
        time.sleep(0.005)
    grabber.stop()
    assert grabber.reconnects >= 2 and source.opens >= 2 and source.closed
    assert grabber.captured == 6 and len(frames) + grabber.dropped == 6
    # every reopening is said, with the attempt; the end names the lost source
    assert len(said) >= 3 and "after 3 frames" in said[0] and "(attempt 1 of 5)" in said[0]
    assert "(attempt 2 of 5)" in said[1] and grabber.end_reason.startswith("source lost")


class DeadLiveSource:
    """A live camera that is gone: every read fails, every reopen fails. Records what happens after close()."""

    live, fps = True, 0.0

    def __init__(self):
        self.closed = False
        self.reopened_after_close = 0
        self.grabber = None
        self.thread_alive_at_close = None

    def read(self):
        return None, None

    def reopen(self):
        self.reopened_after_close += self.closed
        raise SourceError("unplugged")

    def close(self):
        self.thread_alive_at_close = self.grabber.thread.is_alive()
        self.closed = True


def test_stop_interrupts_the_backoff_and_joins_before_closing():
    source = DeadLiveSource()
    grabber = source.grabber = LatestFrameGrabber(source, max_reconnects=5, backoff_s=6.0).start()
    while grabber.failures < 1:
        time.sleep(0.01)
    started = time.perf_counter()
    grabber.stop()
    assert time.perf_counter() - started < 1.0
    assert source.thread_alive_at_close is False and not grabber.thread.is_alive()
    time.sleep(0.2)
    assert source.reopened_after_close == 0


class GlitchyLiveSource:
    """Every third read fails and the reopen works: 30 frames in, then the camera is gone for good."""

    live, fps = True, 0.0

    def __init__(self):
        self.reads = self.sent = 0

    def read(self):
        self.reads += 1
        if self.sent >= 30 or self.reads % 3 == 0:
            return None, None
        self.sent += 1
        return np.zeros((8, 8, 3), np.uint8), None

    def reopen(self):
        if self.sent >= 30:
            raise SourceError("gone")

    def close(self):
        pass


def test_the_reconnect_budget_counts_failures_in_a_row_not_over_the_run():
    grabber = LatestFrameGrabber(GlitchyLiveSource(), max_reconnects=2, backoff_s=0.001).start()
    while grabber.next_frame() is not None:
        pass
    grabber.stop()
    assert grabber.captured == 30 and grabber.reconnects >= 14 and grabber.failures == 2


def _frames_in(path) -> int:
    cap, n = cv2.VideoCapture(str(path)), 0
    while cap.read()[0]:
        n += 1
    return n


def test_the_command_writes_every_replayed_frame_to_a_file_output(bundle_dir, tmp_path):
    from typer.testing import CliRunner

    from edgecls.cli import app

    data = write_cifar10(tmp_path / "data", per_batch=10, test=300)
    out, log = tmp_path / "replay.mp4", tmp_path / "frames.jsonl"
    result = CliRunner().invoke(
        app,
        ["camera", str(bundle_dir), "--replay-test-set", "cifar10", "--data-dir", str(data), "--headless",
         "--max-frames", "300", "--output", f"file://{out}", "--jsonl", str(log)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _frames_in(out) == 300 and not list(tmp_path.glob(".*"))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 300 and all(r["decision"] in (*CIFAR10_CLASSES, "unknown", None) for r in records)


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("run", "needs an extension"),
        ("ftp://host:21/x", "outputs are file://"),
        ("rtp://127.0.0.1", "host and a port"),
        ("rtp://127.0.0.1:5000?codec=vp9", "codec=h264|jpeg"),
        ("rtsp://127.0.0.1:8554/live?codec=jpeg", "H.264 only"),
    ],
)
def test_an_output_that_cannot_be_says_why_before_anything_opens(uri, problem):
    from edgecls.errors import ConfigError

    with pytest.raises(ConfigError, match=problem):
        CameraOptions(outputs=(uri,))


def test_stream_outputs_pick_the_best_encoder_present_and_name_the_package_when_none_is():
    from edgecls.camera.outputs import parse_output, stream_pipeline
    from edgecls.errors import OutputError

    rtp = parse_output("rtp://10.0.0.2:5000?bitrate=2000")
    jetson = stream_pipeline(rtp, {"nvv4l2h264enc", "x264enc"})
    assert "nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc" in jetson and "bitrate=2000000" in jetson
    assert jetson.endswith(
        "rtph264pay config-interval=-1 pt=96 ! udpsink host=10.0.0.2 port=5000 sync=false async=false"
    )  # noqa: E501
    assert "x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000" in stream_pipeline(rtp, {"x264enc"})
    with pytest.raises(OutputError, match="gstreamer1.0-plugins-ugly.*codec=jpeg"):
        stream_pipeline(rtp, set())
    assert "jpegenc" in stream_pipeline(parse_output("rtp://10.0.0.2:5000?codec=jpeg"), set())
    rtsp = stream_pipeline(parse_output("rtsp://10.0.0.2:8554/robot"), {"x264enc"})
    assert rtsp.endswith("rtspclientsink location=rtsp://10.0.0.2:8554/robot protocols=tcp")


def test_without_a_gui_the_loop_explains_and_runs_headless_and_records(clf, video, tmp_path, capsys, monkeypatch):
    from edgecls.camera import loop as camera

    monkeypatch.setattr(camera, "gui_unavailable", lambda: "this OpenCV has no GUI (opencv-python-headless)")
    monkeypatch.setattr(cv2, "imshow", lambda *a: pytest.fail("imshow called without a GUI"))
    summary = run_camera(clf, CameraOptions(source=str(video), headless=False, record=str(tmp_path / "out.mp4")))
    assert summary["captured"] == 40 and "no window: this OpenCV has no GUI" in capsys.readouterr().err
    assert _frames_in(tmp_path / "out.mp4") == summary["frames"] and not list(tmp_path.glob(".*"))


class FailsAfter(SlowBackend):
    """Classifies `frames` frames, then raises `error` (a crash, or Ctrl-C) from predict."""

    def __init__(self, clf, frames: int, error: BaseException):
        super().__init__(clf)
        self.left, self.error = frames, error

    def predict(self, frame, color="bgr"):
        if self.left == 0:
            raise self.error
        self.left -= 1
        return self.clf.predict(frame, color)


def test_a_crash_mid_loop_still_leaves_a_playable_recording(clf, video, tmp_path):
    with pytest.raises(RuntimeError, match="exploded"):
        run_camera(
            FailsAfter(clf, 12, RuntimeError("motor driver exploded")),
            CameraOptions(source=str(video), headless=True, record=str(tmp_path / "crash.mp4")),
        )
    assert _frames_in(tmp_path / "crash.mp4") == 12 and not list(tmp_path.glob(".*"))


def test_ctrl_c_ends_the_loop_with_its_summary_and_a_complete_recording(clf, video, tmp_path):
    summary = run_camera(
        FailsAfter(clf, 12, KeyboardInterrupt()),
        CameraOptions(
            source=str(video),
            headless=True,
            record=str(tmp_path / "out.mp4"),
            summary_json=str(tmp_path / "summary.json"),
        ),
    )
    assert summary["interrupted"] and summary["frames"] == 12 and summary["cpu_ms_per_frame"] > 0
    assert json.loads((tmp_path / "summary.json").read_text())["frames"] == 12
    assert _frames_in(tmp_path / "out.mp4") == 12 and not list(tmp_path.glob(".*"))


def test_the_overlay_reads_on_a_white_frame(clf):
    from edgecls.camera.overlay import draw_overlay

    frame = np.full((480, 640, 3), 255, np.uint8)
    out = draw_overlay(frame.copy(), ["airplane 91%   ship 5%   truck 2%", "inference 0.45 ms"])
    box = out[:50, :300].astype(int)
    background, text = np.percentile(box, 10), np.percentile(box, 99.5)
    assert background < 80 and text > 200  # light text on a dark box: contrast whatever the scene


def _start_live_replay(clf, cifar_root, monkeypatch, fps: float, max_frames: int):
    """A replay with `--serve 127.0.0.1:0` started in a thread: (its web view once open, the thread, the summary once
    done)."""
    from edgecls.camera.webview import WebView

    opened, done = [], {}
    original = WebView.__init__

    def remember(self, *args, **kwargs):
        original(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(WebView, "__init__", remember)
    options = CameraOptions(
        replay_test_set="cifar10",
        data_dir=str(cifar_root),
        headless=True,
        fps=fps,
        max_frames=max_frames,
        serve="127.0.0.1:0",
    )
    thread = threading.Thread(target=lambda: done.update(run_replay(clf, options)))
    thread.start()
    while not opened and thread.is_alive():
        time.sleep(0.02)
    return opened[0], thread, done


@pytest.fixture()
def live_view(clf, cifar_root, monkeypatch):
    """A replay at 40 fps with its web view; yield (the view, the thread, the summary once done)."""
    view, thread, done = _start_live_replay(clf, cifar_root, monkeypatch, fps=40.0, max_frames=120)
    yield view, thread, done
    thread.join(timeout=30)


def test_the_live_web_view_serves_video_and_numbers_while_replaying(live_view):
    import threading
    import urllib.request

    from edgecls.camera.loop import parse_address

    with pytest.raises(Exception, match="HOST:PORT"):
        parse_address("8080")
    view, thread, done = live_view
    polled = []

    def watch_numbers():  # a page: it polls the numbers until the loop's summary arrives
        while not (polled and "summary" in polled[-1]):
            try:
                polled.append(json.loads(urllib.request.urlopen(view.address + "stats.json", timeout=5).read()))
            except OSError:
                return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch_numbers)
    watcher.start()
    time.sleep(1.0)
    page = urllib.request.urlopen(view.address, timeout=5).read().decode()
    with urllib.request.urlopen(view.address + "frame.jpg?after=-1", timeout=5) as response:
        numbers, frame_id = json.loads(response.headers["X-Frame-Stats"]), int(response.headers["X-Frame-Id"])
        framed = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_COLOR)
    with urllib.request.urlopen(view.address + f"frame.jpg?after={frame_id}", timeout=5) as response:
        assert int(response.headers["X-Frame-Id"]) > frame_id  # waited for a newer frame
    with urllib.request.urlopen(view.address + "stream.mjpg", timeout=5) as stream:
        assert stream.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        head = stream.read(200)
        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
        body = head.split(b"\r\n\r\n", 1)[1] + stream.read(length)
    thread.join(timeout=30)
    watcher.join(timeout=30)
    image = cv2.imdecode(np.frombuffer(body[:length], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == framed.shape == (480, 640, 3)
    assert "frame.jpg" in page and "stats.json" in page
    stats = polled[len(polled) // 2]
    assert (
        stats["frames"] > 0
        and stats["fps"] > 0
        and "inference_ms" in stats
        and stats["accuracy"].endswith(f"of {stats['frames']}")
    )
    assert len(stats["history"]["frame_age_ms"]) == stats["frames"] and " / " in stats["processing_p50_p99"]
    assert numbers["truth"][:-2] in CIFAR10_CLASSES and numbers["truth"][-1] in "✓✗"
    assert numbers["decision"].split(" (")[0] in (*CIFAR10_CLASSES, "undecided", "unknown")
    assert numbers["rule"].startswith("3 of the last 5 frames")
    assert done["frames"] == 120
    assert polled[-1]["summary"]["frames"] == 120 and polled[-1]["summary"]["accuracy"].endswith("of 120")


def _browser():
    """Headless Chromium driven by Selenium through Debian's chromedriver, or None where any of them is missing."""
    import shutil

    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        return None
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,700"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(driver))


SAMPLE_PAGE = """const v = document.getElementById("video");
const cell = k => document.querySelector(`#frame td[data-key=${k}]`);
return [v.toDataURL("image/png"), cell("label")?.textContent, cell("truth")?.textContent];"""


def test_a_browser_shows_beside_each_frame_that_frame_s_label(clf, cifar_root, monkeypatch):
    """At 30 fps replay, 20 samples of the page: the frame on screen is found among the frames the loop published by
    its pixels, and the panel beside it must show the prediction and true label the loop drew on that frame."""
    import base64

    from edgecls.camera.webview import WebView

    driver = _browser()
    if driver is None:
        pytest.skip("headless Chromium, chromedriver or selenium missing (apt-get install chromium chromium-driver)")
    published = []
    original_publish = WebView.publish

    def remember_frame(self, frame, stats):
        published.append((cv2.resize(frame, (160, 120), interpolation=cv2.INTER_AREA).astype(np.int16), stats))
        original_publish(self, frame, stats)

    monkeypatch.setattr(WebView, "publish", remember_frame)
    view, thread, _ = _start_live_replay(clf, cifar_root, monkeypatch, fps=30.0, max_frames=200)
    try:
        driver.get(view.address)
        time.sleep(1.0)
        samples = []
        for _ in range(20):
            samples.append(driver.execute_script(SAMPLE_PAGE))
            time.sleep(0.13)
    finally:
        thread.join(timeout=60)
        driver.quit()
    matched = set()
    for png, label, truth in samples:
        shown = cv2.imdecode(np.frombuffer(base64.b64decode(png.split(",", 1)[1]), np.uint8), cv2.IMREAD_COLOR)
        shown = cv2.resize(shown, (160, 120), interpolation=cv2.INTER_AREA).astype(np.int16)
        distances = [np.abs(shown - frame).mean() for frame, _ in published]
        best = int(np.argmin(distances))
        assert distances[best] < 3.0  # that frame, JPEG-compressed: not a blank or a stale canvas
        stats = published[best][1]
        assert (label, truth) == (stats["label"], stats["truth"])
        matched.add(best)
    assert len(matched) >= 10  # the page followed the replay: it did not show one frame twenty times


def test_the_web_view_encodes_each_frame_once_caps_connections_and_drops_idle_ones():
    import socket
    import threading
    import urllib.error
    import urllib.request

    from edgecls.camera.webview import WebView

    view = WebView("127.0.0.1", 0, max_fps=1000, max_connections=4, idle_timeout_s=0.5)
    port = view.server.server_address[1]
    try:
        frames = [np.full((48, 64, 3), i, np.uint8) for i in range(40)]
        received = [[] for _ in range(3)]

        def watch(into):
            with urllib.request.urlopen(view.address + "stream.mjpg", timeout=5) as stream:
                while len(into) < 10:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        head += stream.read(1)
                    into.append(stream.read(int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0]) + 2))

        viewers = [threading.Thread(target=watch, args=(r,)) for r in received]
        for v in viewers:
            v.start()
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", port)) as one_too_many:  # 3 viewers + this one fill the 4 slots
            time.sleep(0.1)
            with pytest.raises(urllib.error.HTTPError, match="503"):
                urllib.request.urlopen(view.address + "stats.json", timeout=5)
            assert one_too_many.recv(10, socket.MSG_PEEK) == b""  # the idle connection was closed by the server
        for frame in frames:
            view.publish(frame, {})
            time.sleep(0.02)
        for v in viewers:
            v.join(timeout=10)
        assert all(len(r) == 10 for r in received)
        distinct = set().union(*map(set, received))
        # once per frame, not once per viewer (each viewer may have had one more frame encoded that it never read)
        assert len(distinct) < 30 and len(distinct) <= view.encodes <= len(distinct) + len(received)
        urllib.request.urlopen(view.address + "stats.json", timeout=5)  # slots are given back
    finally:
        view.close()


def test_each_frame_the_page_gets_carries_its_own_numbers_while_frames_keep_coming():
    """The page's numbers and its video must not disagree (a screenshot once showed 'frog' drawn and 'truck' listed):
    frames published as fast as the loop can, each fetched frame's pixels must match the numbers sent with it."""
    import urllib.request

    from edgecls.camera.webview import WebView

    view = WebView("127.0.0.1", 0, max_fps=1000)
    stop = threading.Event()

    def publish():
        value = 0
        while not stop.is_set():
            view.publish(np.full((8, 8, 3), value * 10 % 250, np.uint8), {"label": str(value * 10 % 250)})
            value += 1

    publisher = threading.Thread(target=publish)
    publisher.start()
    try:
        seen, after = set(), -1
        for _ in range(50):
            with urllib.request.urlopen(view.address + f"frame.jpg?after={after}", timeout=5) as response:
                numbers, after = json.loads(response.headers["X-Frame-Stats"]), int(response.headers["X-Frame-Id"])
                pixels = cv2.imdecode(np.frombuffer(response.read(), np.uint8), cv2.IMREAD_GRAYSCALE)
            assert abs(float(pixels.mean()) - int(numbers["label"])) < 3  # JPEG's error, not another frame
            seen.add(numbers["label"])
        assert len(seen) > 10
    finally:
        stop.set()
        publisher.join()
        view.close()


@pytest.mark.parametrize(
    ("pipeline", "live"),
    [
        ("videotestsrc num-buffers=90 ! videoconvert ! appsink", False),
        ("videotestsrc ! videoconvert ! appsink", False),
        ("filesrc location=a.mp4 ! decodebin ! videoconvert ! appsink", False),
        ("v4l2src device=/dev/video0 ! video/x-raw, width=640 ! videoconvert ! appsink", True),
        ("v4l2src num-buffers=10 ! videoconvert ! appsink", False),
        ("rtspsrc location=rtsp://cam/1 latency=0 ! rtph264depay ! avdec_h264 ! videoconvert ! appsink", True),
    ],
)
def test_a_pipeline_is_live_only_when_a_capture_element_feeds_it_without_end(pipeline, live):
    """A pipeline that ends (num-buffers, a file, a test source) ends the loop; a camera or a stream is reopened."""
    from edgecls.camera.video_uri import parse_source

    assert parse_source(pipeline).live is live


def test_pipeline_elements_skip_caps_and_branch_references():
    from edgecls.camera.video_uri import csi_pipeline, pipeline_elements

    assert pipeline_elements(csi_pipeline(0, 1280, 720, 30, 0)) == [
        "nvarguscamerasrc",
        "nvvidconv",
        "videoconvert",
        "appsink",
    ]
    assert pipeline_elements("videotestsrc ! tee name=t ! queue ! appsink t. ! queue ! fakesink") == [
        "videotestsrc",
        "tee",
        "queue",
        "appsink",
        "queue",
        "fakesink",
    ]


def test_a_csi_camera_without_argus_fails_at_once_naming_the_element(monkeypatch):
    """OpenCV hangs opening a pipeline whose source element is missing; the element check refuses it first."""
    from edgecls.camera import video_uri

    monkeypatch.setattr(video_uri, "opencv_video_io", lambda: {"gstreamer": True, "module": "cv2"})
    monkeypatch.setattr(video_uri, "missing_gstreamer_elements", lambda names: [n for n in names if n.startswith("nv")])
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: pytest.fail("OpenCV must not be asked to open it"))
    with pytest.raises(SourceError, match="no element nvarguscamerasrc, nvvidconv.*nvargus-daemon"):
        VideoSource("csi://0")


def test_a_live_source_that_never_opens_is_given_up_after_the_timeout(monkeypatch):
    from edgecls.camera import sources

    never = threading.Event()
    monkeypatch.setattr(sources, "gstreamer_missing", lambda uri: None)
    monkeypatch.setattr(cv2, "VideoCapture", lambda *a: never.wait(30))
    started = time.perf_counter()
    with pytest.raises(SourceError, match="did not open within 0.2 s.*nvargus-daemon"):
        VideoSource("csi://0", open_timeout_s=0.2)
    never.set()
    assert time.perf_counter() - started < 5


def test_gstreamer_registry_answers_for_real_elements():
    from edgecls.camera.video_uri import missing_gstreamer_elements

    if missing_gstreamer_elements(["appsink"]) is None:
        pytest.skip("GStreamer's library is not installed here (the Jetson-shaped lane of .ci/run installs it)")
    assert missing_gstreamer_elements(["videotestsrc", "appsink", "nvarguscamerasrc"]) == ["nvarguscamerasrc"]
