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
says so before anything is opened, with the fix, and names every element of the pipeline this GStreamer lacks:
OpenCV itself hangs, silently, opening a pipeline whose source element does not exist (Debian's OpenCV 4.6 with
GStreamer 1.22, `nvarguscamerasrc` on a desktop: no frame, no message).

A pipeline is live (reopened when it fails) only when its source is a capture element (`LIVE_SOURCES`) and it sets no
`num-buffers`: `videotestsrc num-buffers=90 ! … ! appsink` or a `filesrc` pipeline ends, and the loop with it.

The CSI pipeline follows NVIDIA's Argus samples: capture in NVMM memory, convert on the VIC with `nvvidconv`, and
one CPU `videoconvert` from BGRx to OpenCV's BGR; the appsink keeps only the newest buffer, as the capture thread
does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

STREAM_SCHEMES = ("rtsp", "rtsps", "http", "https", "rtmp", "udp")
CSI_DEFAULTS = {"width": 1280, "height": 720, "fps": 30, "flip": 0}
LIVE_SOURCES = frozenset(
    {
        "nvarguscamerasrc",
        "nvv4l2camerasrc",
        "v4l2src",
        "libcamerasrc",
        "rtspsrc",
        "udpsrc",
        "tcpclientsrc",
        "souphttpsrc",
        "srtsrc",
        "rtmpsrc",
        "rtmp2src",
        "aravissrc",
        "pylonsrc",
    }
)
ELEMENT_HINTS = {
    "nvarguscamerasrc": "NVIDIA's Argus camera source, which exists only on a Jetson (JetPack's nvidia-l4t-gstreamer). "
    "On a Jetson: `gst-inspect-1.0 nvarguscamerasrc` must list it (sudo apt install nvidia-l4t-gstreamer), and "
    "`sudo systemctl restart nvargus-daemon` if it does. Elsewhere use a USB camera (v4l2:///dev/video0)",
    "nvvidconv": "NVIDIA's VIC converter, which comes with JetPack's nvidia-l4t-gstreamer",
}
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
        elements = pipeline_elements(source)
        live = bool(elements) and elements[0] in LIVE_SOURCES and "num-buffers" not in source
        return VideoURI(source, "pipeline", source, "CAP_GSTREAMER", live=live)
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


def pipeline_elements(pipeline: str) -> list[str]:
    """The element factory names of a gst-launch pipeline, in order: caps (`video/x-raw, …`) and branch references
    (`t.`) are not elements."""
    names = []
    for part in pipeline.split("!"):
        token = part.strip().split(" ", 1)[0].strip()
        if token and "/" not in token and "(" not in token and not token.endswith(".") and "=" not in token:
            names.append(token)
    return names


@functools.cache
def _gstreamer():
    """libgstreamer, initialized, or None: the library OpenCV's GStreamer backend itself links (no Python `gi`)."""
    name = ctypes.util.find_library("gstreamer-1.0") or "libgstreamer-1.0.so.0"
    try:
        gst = ctypes.CDLL(name)
    except OSError:
        return None
    gst.gst_init_check.restype = ctypes.c_bool
    gst.gst_init_check.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    gst.gst_element_factory_find.restype = ctypes.c_void_p
    gst.gst_element_factory_find.argtypes = [ctypes.c_char_p]
    gst.gst_object_unref.argtypes = [ctypes.c_void_p]
    return gst if gst.gst_init_check(None, None, None) else None


def missing_gstreamer_elements(elements: list[str]) -> list[str] | None:
    """The elements this machine's GStreamer lacks; None where GStreamer's library cannot be loaded to ask."""
    gst = _gstreamer()
    if gst is None:
        return None
    missing = []
    for name in dict.fromkeys(elements):
        factory = gst.gst_element_factory_find(name.encode())
        if factory:
            gst.gst_object_unref(factory)
        else:
            missing.append(name)
    return missing


def gstreamer_missing(uri: VideoURI) -> str | None:
    """Why `uri` cannot open here (None when it can, as far as OpenCV's build and GStreamer's registry tell)."""
    if not uri.needs_gstreamer:
        return None
    what = "a CSI camera (csi://)" if uri.kind == "csi" else "a GStreamer pipeline"
    if not opencv_video_io()["gstreamer"]:
        return JETSON_OPENCV_HINT.format(where=opencv_video_io()["module"], what=what)
    missing = missing_gstreamer_elements(pipeline_elements(str(uri.target)))
    if not missing:
        return None
    hints = [f"{name}: {ELEMENT_HINTS[name]}" for name in missing if name in ELEMENT_HINTS]
    return f"this machine's GStreamer has no element {', '.join(missing)}, which {what} needs" + (
        f" ({'; '.join(hints)})" if hints else f" (`gst-inspect-1.0 {missing[0]}` names the plugin package)"
    )


def _csi_answer() -> str:
    missing = missing_gstreamer_elements(["nvarguscamerasrc", "nvvidconv"])
    if missing is None:
        return "unknown (GStreamer's library cannot be loaded to ask for nvarguscamerasrc)"
    return (
        f"no: GStreamer has no {', '.join(missing)} (not a Jetson, or JetPack's plugins are missing)"
        if missing
        else "yes (nvarguscamerasrc)"
    )


def openable_sources() -> dict[str, str]:
    """For doctor: each kind of source and whether this OpenCV can open it, with the reason where not."""
    io = opencv_video_io()
    no_gst = "no: OpenCV without GStreamer (pip wheel); use JetPack's OpenCV"
    return {
        "csi://N": _csi_answer() if io["gstreamer"] else no_gst,
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
