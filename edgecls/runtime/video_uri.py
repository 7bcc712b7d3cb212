"""Camera and stream sources as jetson-inference names them, mapped to what OpenCV's `VideoCapture` opens.

| source | opened as |
|---|---|
| `csi://N` (`?width=&height=&fps=&flip=`) | GStreamer: `nvarguscamerasrc sensor-id=N` → `nvvidconv` → BGR appsink |
| `v4l2:///dev/videoN`, `/dev/videoN`, `N` | OpenCV's V4L2 backend (no GStreamer needed) |
| `rtsp://…`, `http(s)://…`, `rtmp://…` | OpenCV's default stream backend (FFmpeg in the pip wheel) |
| `file://path`, a path | a video file (a directory: its images in order) |
| anything holding `!` | a GStreamer pipeline, as written (it must end in `appsink`) |

A Jetson's CSI camera is reachable only through GStreamer and NVIDIA's `nvarguscamerasrc`. The pip wheels of
OpenCV (`opencv-python-headless`) are built without GStreamer; JetPack's own OpenCV has it. `gstreamer_missing`
says so before anything is opened, with the fix. The pipeline follows NVIDIA's Argus samples: capture in
NVMM memory, convert on the VIC with `nvvidconv`, and one CPU `videoconvert` from BGRx to OpenCV's BGR; the appsink
keeps only the newest buffer, as the capture thread does.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "udp")
CSI_DEFAULTS = {"width": 1280, "height": 720, "fps": 30, "flip": 0}
JETSON_OPENCV_HINT = (
    "This OpenCV ({where}) is built without GStreamer, which {what} needs. On a Jetson use JetPack's OpenCV, which has "
    "it: `pip uninstall opencv-python-headless opencv-python` in the venv, create the venv with "
    "--system-site-packages, and install edgecls with the [jetson] extra (it brings no OpenCV wheel). "
    "`python3 -c \"import cv2; print(cv2.getBuildInformation())\"` must say 'GStreamer: YES'."
)


@dataclass(frozen=True)
class VideoURI:
    """How one source is opened: `target` and `api` go to `cv2.VideoCapture(target, api)`."""

    source: str
    kind: str  # csi, v4l2, index, stream, file, directory, pipeline
    target: str | int
    api_name: str  # the cv2.CAP_* constant's name
    live: bool

    @property
    def needs_gstreamer(self) -> bool:
        return self.api_name == "CAP_GSTREAMER"


def csi_pipeline(sensor_id: int, width: int, height: int, fps: int, flip: int) -> str:
    return (
        f"nvarguscamerasrc sensor-id={sensor_id} ! "
        f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, format=(string)NV12, "
        f"framerate=(fraction){fps}/1 ! nvvidconv flip-method={flip} ! video/x-raw, format=(string)BGRx ! "
        "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false"
    )


def parse_source(source: str) -> VideoURI:
    from pathlib import Path

    from edgecls.errors import SourceError

    if "!" in source:
        return VideoURI(source, "pipeline", source, "CAP_GSTREAMER", live=True)
    if source.isdigit():
        return VideoURI(source, "index", int(source), "CAP_ANY", live=True)
    parts = urlsplit(source)
    scheme = parts.scheme.lower()
    if scheme == "csi":
        sensor = parts.netloc or parts.path.strip("/") or "0"
        if not sensor.isdigit():
            raise SourceError(f"{source!r}: a CSI camera is csi://N with N the sensor id (csi://0, csi://1)")
        options = dict(CSI_DEFAULTS)
        for key, values in parse_qs(parts.query).items():
            if key not in options or not values[-1].isdigit():
                raise SourceError(
                    f"{source!r}: csi:// takes {', '.join(f'{k}=N' for k in CSI_DEFAULTS)}, got {key}={values[-1]}"
                )
            options[key] = int(values[-1])
        return VideoURI(source, "csi", csi_pipeline(int(sensor), **options), "CAP_GSTREAMER", live=True)
    if scheme == "v4l2" or source.startswith("/dev/video"):
        device = parts.path if scheme == "v4l2" else source
        if not device.startswith("/dev/"):
            raise SourceError(f"{source!r}: a V4L2 camera is v4l2:///dev/videoN (three slashes)")
        return VideoURI(source, "v4l2", device, "CAP_V4L2", live=True)
    if scheme in STREAM_SCHEMES:
        return VideoURI(source, "stream", source, "CAP_ANY", live=True)
    path = parts.path if scheme == "file" else source
    if Path(path).is_dir():
        return VideoURI(source, "directory", path, "CAP_ANY", live=False)
    if not Path(path).is_file():
        raise SourceError(
            f"video source {source!r} is not a camera (N, csi://N, v4l2:///dev/videoN), a stream "
            f"({', '.join(s + '://' for s in STREAM_SCHEMES[:3])}…), a GStreamer pipeline (with '!'), a "
            "video file or an image directory"
        )
    return VideoURI(source, "file", path, "CAP_ANY", live=False)


@functools.cache
def opencv_video_io() -> dict:
    """What this OpenCV can open: its build's GStreamer/FFmpeg/V4L2 support and its registered backends."""
    import cv2

    build = {}
    for line in cv2.getBuildInformation().splitlines():
        name, _, value = line.strip().partition(":")
        if name in ("GStreamer", "FFMPEG", "v4l/v4l2"):
            build[name] = value.strip()
    registry = cv2.videoio_registry
    return {
        "opencv": cv2.__version__,
        "module": getattr(cv2, "__file__", None),
        "gstreamer": build.get("GStreamer", "NO").upper().startswith("YES"),
        "ffmpeg": build.get("FFMPEG", "NO").upper().startswith("YES"),
        "camera_backends": [registry.getBackendName(b) for b in registry.getCameraBackends()],
        "stream_backends": [registry.getBackendName(b) for b in registry.getStreamBackends()],
    }


def gstreamer_missing(uri: VideoURI) -> str | None:
    """Why `uri` cannot open with this OpenCV (None when it can, as far as the build tells)."""
    if not uri.needs_gstreamer or opencv_video_io()["gstreamer"]:
        return None
    what = "a CSI camera (csi://)" if uri.kind == "csi" else "a GStreamer pipeline"
    return JETSON_OPENCV_HINT.format(where=opencv_video_io()["module"], what=what)


def openable_sources() -> dict[str, str]:
    """For doctor: each kind of source and whether this OpenCV can open it, with the reason where not."""
    io = opencv_video_io()
    no_gst = "no: OpenCV without GStreamer (pip wheel); use JetPack's OpenCV"
    return {
        "csi://N": "yes (GStreamer; needs nvarguscamerasrc, i.e. a Jetson)" if io["gstreamer"] else no_gst,
        "GStreamer pipeline": "yes" if io["gstreamer"] else no_gst,
        "v4l2:///dev/videoN, N": "yes (V4L2)" if "V4L2" in io["camera_backends"] else "no: OpenCV without V4L2",
        "rtsp://, http(s)://": (
            "yes ("
            + ", ".join(
                b
                for b in ("FFMPEG", "GSTREAMER")
                if b in io["stream_backends"] and (b != "GSTREAMER" or io["gstreamer"])
            )
            + ")"
        )
        if io["ffmpeg"] or io["gstreamer"]
        else "no: OpenCV without FFmpeg or GStreamer",
        "video file": "yes (FFmpeg)" if io["ffmpeg"] else ("yes (GStreamer)" if io["gstreamer"] else "no: no decoder"),
    }
