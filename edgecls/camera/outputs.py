"""Where the annotated video goes (`camera --output URI`, repeatable), named as jetson-inference's `videoOutput` does.

| output | written as |
|---|---|
| `file://run.mp4`, a path | MPEG-4 through OpenCV (any build), under a hidden name moved into place at the end |
| `display://0` | a window (an OpenCV build with a GUI and a display: `gui_unavailable` says why not) |
| `rtp://HOST:PORT` | H.264 over RTP/UDP through GStreamer: `?codec=jpeg` for motion JPEG, `?bitrate=KBIT/S` |
| `rtsp://HOST:PORT/PATH` | H.264 published to an RTSP server (MediaMTX, …) with GStreamer's `rtspclientsink` |

Streams need an OpenCV built with GStreamer (JetPack's, Debian's; not the pip wheels). H.264 goes through the best
encoder this GStreamer has (`H264_ENCODERS`): the Jetson's hardware `nvv4l2h264enc`, else `x264enc`
(gstreamer1.0-plugins-ugly) tuned for latency, else `openh264enc`. Every element is looked up before the loop
starts, so a missing one is an error naming its package, not a silent empty stream. UDP sinks never wait for a
receiver (`sync=false async=false`): a ground station that is not listening costs the robot nothing.
"""

from __future__ import annotations

import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import cv2
import numpy as np

from edgecls.camera import video_uri
from edgecls.errors import ConfigError, OutputError

SCHEMES = ("file", "display", "rtp", "rtsp")
CODECS = ("h264", "jpeg")
GOP_FRAMES = 30  # a receiver that joins late waits at most this many frames for a key frame
H264_ENCODERS = {  # best first; {bps}, {kbps} and {gop} are filled in
    "nvv4l2h264enc": "videoconvert ! video/x-raw,format=BGRx ! nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! "
    "nvv4l2h264enc insert-sps-pps=true iframeinterval={gop} bitrate={bps} ! h264parse",
    "x264enc": "videoconvert ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={kbps} key-int-max={gop} ! "
    "video/x-h264,profile=baseline",
    "openh264enc": "videoconvert ! openh264enc bitrate={bps} gop-size={gop} ! h264parse",
}
PACKAGES = {
    "x264enc": "gstreamer1.0-plugins-ugly",
    "openh264enc": "gstreamer1.0-plugins-bad",
    "rtspclientsink": "gstreamer1.0-rtsp",
    "jpegenc": "gstreamer1.0-plugins-good",
    "rtph264pay": "gstreamer1.0-plugins-good",
    "rtpjpegpay": "gstreamer1.0-plugins-good",
    "udpsink": "gstreamer1.0-plugins-good",
}


@dataclass(frozen=True)
class OutputURI:
    """One `--output`, checked for its form when the options are made; opened by `open_output`."""

    uri: str
    kind: str  # file, display, rtp, rtsp
    target: str  # the path, the display, HOST:PORT, or the RTSP URL
    codec: str = "h264"
    bitrate_kbps: int = 4000

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.target.rpartition(":")
        return host, int(port)


def parse_output(uri: str) -> OutputURI:
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in ("", "file") or (len(scheme) == 1 and uri[1:3] == ":\\"):  # a path (a Windows drive is no scheme)
        path = parts.netloc + parts.path if scheme == "file" else uri
        if not Path(path).suffix:
            raise ConfigError(f"--output {uri!r}: a video file needs an extension (run.mp4)")
        return OutputURI(uri, "file", path)
    if scheme == "display":
        return OutputURI(uri, "display", parts.netloc or "0")
    if scheme not in SCHEMES:
        raise ConfigError(
            f"--output {uri!r}: outputs are file://run.mp4 (or a path), display://0, rtp://HOST:PORT and "
            "rtsp://HOST:PORT/PATH; the live web view is --serve HOST:PORT"
        )
    if not parts.hostname or parts.port is None:
        raise ConfigError(f"--output {uri!r}: a stream needs a host and a port ({scheme}://192.168.1.10:5000)")
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    unknown = set(query) - {"codec", "bitrate"}
    codec = query.get("codec", "h264").lower()
    if unknown or codec not in CODECS or not query.get("bitrate", "1").isdigit():
        raise ConfigError(
            f"--output {uri!r}: a stream takes ?codec={'|'.join(CODECS)} and ?bitrate=KBIT/S, got {parts.query!r}"
        )
    if scheme == "rtsp" and codec != "h264":
        raise ConfigError(f"--output {uri!r}: RTSP publishing is H.264 only")
    target = f"{parts.hostname}:{parts.port}" if scheme == "rtp" else uri.split("?", 1)[0]
    return OutputURI(uri, scheme, target, codec, int(query.get("bitrate", 4000)))


def stream_pipeline(spec: OutputURI, available=None) -> str:
    """The GStreamer pipeline from OpenCV's `appsrc` to the stream: the encoder is the best one `available` names."""
    if spec.codec == "jpeg":
        encode = "videoconvert ! jpegenc quality=85"
    else:
        available = set(H264_ENCODERS) if available is None else available
        encoder = next((name for name in H264_ENCODERS if name in available), None)
        if encoder is None:
            raise OutputError(
                f"--output {spec.uri}: this GStreamer has no H.264 encoder (nvv4l2h264enc on a Jetson, from "
                "JetPack's nvidia-l4t-gstreamer; x264enc elsewhere: apt install gstreamer1.0-plugins-ugly); "
                f"or send motion JPEG, which gstreamer1.0-plugins-good has: {spec.uri.split('?')[0]}?codec=jpeg"
            )
        kbps = spec.bitrate_kbps
        encode = H264_ENCODERS[encoder].format(bps=kbps * 1000, kbps=kbps, gop=GOP_FRAMES)
    if spec.kind == "rtsp":
        return f"appsrc ! {encode} ! rtspclientsink location={spec.target} protocols=tcp"
    host, port = spec.host_port
    pay = "rtpjpegpay" if spec.codec == "jpeg" else "rtph264pay config-interval=-1 pt=96"
    return f"appsrc ! {encode} ! {pay} ! udpsink host={host} port={port} sync=false async=false"


def rtp_receiver(spec: OutputURI, sink: str = "autovideosink sync=false") -> str:
    """A pipeline that receives `spec`'s RTP stream on its port and shows it (for the console and docs)."""
    _, port = spec.host_port
    if spec.codec == "jpeg":
        caps, decode = "encoding-name=JPEG,payload=26", "rtpjpegdepay ! jpegdec"
    else:
        caps, decode = "encoding-name=H264,payload=96", "rtph264depay ! avdec_h264"
    return (
        f'udpsrc port={port} caps="application/x-rtp,media=video,clock-rate=90000,{caps}" ! {decode} ! '
        f"videoconvert ! {sink}"
    )


def gui_unavailable() -> str | None:
    """Why `cv2.imshow` cannot work here, or None."""
    gui = next(
        (
            line.split(":", 1)[1].strip()
            for line in cv2.getBuildInformation().splitlines()
            if line.strip().startswith("GUI:")
        ),
        "NONE",
    )
    if gui.upper() == "NONE":
        return "this OpenCV has no GUI (opencv-python-headless)"
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display ($DISPLAY is not set)"
    return None


class _VideoWriter:
    """An OpenCV `VideoWriter`, opened on the first frame (its size is the video's), counting what it wrote."""

    def __init__(self, fps: float):
        self.fps = fps or 30.0
        self.writer: cv2.VideoWriter | None = None
        self.frames = 0

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        raise NotImplementedError

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            self.writer = self._open((frame.shape[1], frame.shape[0]))
        self.writer.write(frame)
        self.frames += 1

    def _release(self) -> bool:
        """Close the writer; False when it never opened (no frame came)."""
        if self.writer is None:
            return False
        self.writer.release()
        self.writer = None
        return True


class Recorder(_VideoWriter):
    """An annotated video written under a hidden temporary name and moved onto `path` when closed.

    A crash inside the loop still closes it (the caller's `finally`), so the file holds every frame so far;
    a killed process leaves only the hidden temporary file, never a broken file under the requested name.
    """

    def __init__(self, path: str | os.PathLike, fps: float):
        super().__init__(fps)
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(
            f".{self.path.stem}.write-{os.getpid()}-{secrets.token_hex(4)}{self.path.suffix}"
        )

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        return cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)

    def close(self) -> Path | None:
        if not self._release():
            return None
        if self.frames == 0:
            self.tmp.unlink(missing_ok=True)
            return None
        os.replace(self.tmp, self.path)
        return self.path


class StreamWriter(_VideoWriter):
    """An RTP or RTSP stream fed through OpenCV's GStreamer `appsrc`."""

    def __init__(self, spec: OutputURI, fps: float):
        super().__init__(fps)
        io = video_uri.opencv_video_io()
        if not io["gstreamer"]:
            raise OutputError(video_uri.JETSON_OPENCV_HINT.format(where=io["module"], what=f"--output {spec.uri}"))
        missing = video_uri.missing_gstreamer_elements(list(H264_ENCODERS)) or []
        self.pipeline = stream_pipeline(spec, set(H264_ENCODERS) - set(missing))
        lacking = video_uri.missing_gstreamer_elements(video_uri.pipeline_elements(self.pipeline)) or []
        if lacking:
            packages = sorted({PACKAGES.get(name, f"the plugin of {name}") for name in lacking})
            raise OutputError(
                f"--output {spec.uri}: this GStreamer has no {', '.join(lacking)} (apt install {' '.join(packages)})"
            )
        self.spec = spec

    def _open(self, size: tuple[int, int]) -> cv2.VideoWriter:
        writer = cv2.VideoWriter(self.pipeline, cv2.CAP_GSTREAMER, 0, self.fps, size, True)
        if not writer.isOpened():
            raise OutputError(f"--output {self.spec.uri}: GStreamer did not open {self.pipeline!r}")
        return writer

    def close(self) -> str | None:
        return self.spec.uri if self._release() else None


def open_output(spec: OutputURI, fps: float):
    """A writer for a file or stream output (`write(frame)`, `close()` → what was written or None, `frames`)."""
    if spec.kind == "file":
        return Recorder(spec.target, fps)
    if spec.kind in ("rtp", "rtsp"):
        return StreamWriter(spec, fps)
    raise ValueError(f"{spec.kind} is no writer: the loop shows display:// outputs in its window")
