"""Sources named as jetson-inference names them, opened the way OpenCV can open them, and refused with the fix where
not."""

import cv2
import numpy as np
import pytest

from edgecls.camera import video_uri
from edgecls.camera.sources import VideoSource, open_source
from edgecls.camera.video_uri import openable_sources, opencv_video_io, parse_source
from edgecls.errors import SourceError


def test_each_kind_of_source_maps_to_its_opencv_backend(tmp_path):
    csi = parse_source("csi://1?width=1920&height=1080&fps=60&flip=2")
    assert csi.kind == "csi" and csi.api_name == "CAP_GSTREAMER" and csi.live
    assert csi.target.startswith(
        "nvarguscamerasrc sensor-id=1 ! video/x-raw(memory:NVMM), width=(int)1920, height=(int)1080"
    )
    assert "framerate=(fraction)60/1 ! nvvidconv flip-method=2 !" in csi.target
    assert csi.target.split(" ! ")[-1].startswith("appsink")
    assert parse_source("csi://0").target.startswith("nvarguscamerasrc sensor-id=0 !")
    for spec in ("v4l2:///dev/video2", "/dev/video2"):
        v4l2 = parse_source(spec)
        assert (v4l2.kind, v4l2.target, v4l2.api_name) == ("v4l2", "/dev/video2", "CAP_V4L2")
    assert (parse_source("0").target, parse_source("0").api_name) == (0, "CAP_ANY")
    assert parse_source("rtsp://10.0.0.5:8554/cam").kind == "stream"
    pipeline = "videotestsrc ! videoconvert ! appsink"
    assert (parse_source(pipeline).kind, parse_source(pipeline).api_name) == ("pipeline", "CAP_GSTREAMER")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"")
    assert parse_source(f"file://{clip}").target == str(clip) and not parse_source(str(clip)).live
    with pytest.raises(SourceError, match="csi://N with N the sensor id"):
        parse_source("csi://front")
    with pytest.raises(SourceError, match="csi:// takes width=N, height=N, fps=N, flip=N, got exposure=3"):
        parse_source("csi://0?exposure=3")
    with pytest.raises(SourceError, match="three slashes"):
        parse_source("v4l2://dev/video0")


def test_without_gstreamer_a_csi_camera_is_refused_with_the_jetpack_fix(monkeypatch):
    monkeypatch.setattr(video_uri, "opencv_video_io", lambda: {**opencv_video_io.__wrapped__(), "gstreamer": False})
    for spec in ("csi://0", "nvarguscamerasrc ! appsink"):
        with pytest.raises(SourceError, match="built without GStreamer.*JetPack's OpenCV.*--system-site-packages"):
            VideoSource(spec)
    assert openable_sources()["csi://N"].startswith("no: OpenCV without GStreamer")


@pytest.mark.skipif(not opencv_video_io()["gstreamer"], reason="this OpenCV has no GStreamer (the pip wheel)")
def test_a_gstreamer_pipeline_delivers_bgr_frames():
    source = VideoSource(
        "videotestsrc num-buffers=3 ! video/x-raw, width=64, height=48 ! videoconvert ! "
        "video/x-raw, format=BGR ! appsink"
    )
    frame, _ = source.read()
    assert frame.shape == (48, 64, 3) and frame.dtype == np.uint8
    source.close()


def test_a_video_file_opens_through_its_uri(tmp_path):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(3):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    source = open_source(f"file://{path}")
    assert not source.live and source.fps == pytest.approx(10)
    assert source.read()[0].shape == (48, 64, 3)
    source.close()
