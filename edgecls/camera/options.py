"""How `edgecls camera` runs (`CameraOptions`): where frames come from, what is written, and how a replayed test set
is framed and paced. Declared once with its help; checked when made, before a source is opened."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgecls.errors import ConfigError
from edgecls.options import DATA_DIR, check_at_least, option, parse_address, parse_size


@dataclass(frozen=True)
class CameraOptions:
    """Where frames come from, what is written, and how a replayed test set is framed and paced."""

    source: str = field(
        default="0",
        metadata=option(
            "camera (0, /dev/video0, v4l2:///dev/video0, csi://0 on a Jetson), rtsp/http URL, video file, image "
            "directory or GStreamer pipeline"
        ),
    )
    headless: bool = field(
        default=False,
        metadata=option(
            "no window (servers, CI, SSH); without a display or a GUI build of OpenCV the loop is headless anyway"
        ),
    )
    serve: str | None = field(
        default=None,
        metadata=option(
            "live web view at HOST:PORT (video, per-stage ms, frame age, FPS); 127.0.0.1:8080 for this machine, "
            "0.0.0.0:8080 for the network"
        ),
    )
    outputs: tuple[str, ...] = field(
        default=(),
        metadata=option(
            "where the annotated video goes (repeatable): file://run.mp4 or a path, display://0, rtp://HOST:PORT "
            "(?codec=jpeg, ?bitrate=KBIT/S), rtsp://HOST:PORT/PATH (publish to an RTSP server); streams need OpenCV "
            "with GStreamer",
            flag="--output",
        ),
    )
    record: str | None = field(default=None, metadata=option("write the annotated video here (.mp4): --output FILE"))
    vote: str = field(
        default="3/5",
        metadata=option(
            "decide a class when N of the last M frames voted for it (N/M); a frame the bundle calls unknown votes "
            "unknown"
        ),
    )
    jsonl: str | None = field(default=None, metadata=option("one JSON record per frame"))
    max_frames: int | None = field(default=None, metadata=option("stop after N classified frames"))
    replay_test_set: str | None = field(
        default=None, metadata=option("stream a labelled test set (e.g. cifar10) as frames")
    )
    corruption: str | None = field(
        default=None,
        metadata=option(
            "replay the test set under a camera condition of eval's suite, NAME:SEVERITY (motion_blur:3; names in "
            "edgecls.corruptions)"
        ),
    )
    data_dir: str | None = field(default=None, metadata=DATA_DIR)
    frame_size: str = field(
        default="auto",
        metadata=option(
            "replayed frame size WxH, or auto: about 640x480, chosen so the model sees each test image exactly "
            "(replay then scores what eval scores)"
        ),
    )
    fps: float = field(default=0.0, metadata=option("replay rate in frames/s (0: as fast as possible)"))
    summary_json: str | None = field(
        default=None,
        metadata=option("write the latency summary here (+ latency PNG)", flag=("--json", "--summary-json")),
    )
    warmup_frames: int = field(
        default=10, metadata=option("first N frames are classified but left out of the latency figures")
    )
    window: str = field(default="edgecls", metadata=option("the window's title", cli=False))

    def __post_init__(self) -> None:
        from edgecls.runtime.decision import Decider

        Decider.parse(self.vote)
        if self.corruption is not None:
            from edgecls.corruptions import parse_corruption

            if not self.replay_test_set:
                raise ConfigError("--corruption applies to --replay-test-set: a live camera brings its own conditions")
            parse_corruption(self.corruption)
        specs = self.output_specs  # each --output checked for its form now, before a source is opened
        if self.headless and any(spec.kind == "display" for spec in specs):
            raise ConfigError("--headless and --output display:// contradict each other: drop one")
        if self.frame_size != "auto":
            parse_size(self.frame_size)
        if self.serve:
            parse_address(self.serve)
        check_at_least({"--max-frames": self.max_frames}, 1)
        check_at_least({"--fps": self.fps, "--warmup-frames": self.warmup_frames}, 0)

    @property
    def output_specs(self) -> tuple:
        """Each --output, and --record (its older name for a file), parsed (`edgecls.camera.outputs.OutputURI`)."""
        from edgecls.camera.outputs import parse_output

        return tuple(parse_output(uri) for uri in self.outputs + ((self.record,) if self.record else ()))
