"""What the runtime's commands are asked: which graph to load (`LoadOptions`), how to run a camera
(`CameraOptions`) and how to serve (`ServeOptions`).

Each option is declared once, here, with its help (the command line is built from these fields), and checked when
the options are made, before a model is loaded or a port opened. Standard library only: `edgecls --help` reads
these fields without loading numpy or OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgecls.errors import ConfigError
from edgecls.names import BACKENDS, PRECISIONS
from edgecls.options import DATA_DIR, PUBLIC_KEY, check_at_least, check_choice, option

LOOPBACK = ("127.0.0.1", "localhost", "::1")
DEFAULT_TOP_K = 5  # what Classifier, edgecls serve and the `export --triton` Python model answer with


def parse_size(text: str, flag: str = "--frame-size") -> tuple[int, int]:
    """'640x480' → (640, 480)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise ConfigError(f"{flag} must look like 640x480, got {text!r}") from exc
    if width < 1 or height < 1:
        raise ConfigError(f"{flag} must be at least 1x1, got {text!r}")
    return width, height


def parse_address(text: str, flag: str = "--serve") -> tuple[str, int]:
    """'127.0.0.1:8080' → ('127.0.0.1', 8080)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{flag} must look like 127.0.0.1:8080 (HOST:PORT), got {text!r}")
    return host, int(port)


@dataclass(frozen=True)
class LoadOptions:
    """Which of a bundle's graphs runs, where, and whose signature it must carry: `Classifier.load`'s keyword
    arguments, by name (`Classifier.load(bundle, **asdict(options))`)."""

    backend: str = field(default="auto", metadata=option("inference backend", choices=("auto", *BACKENDS)))
    precision: str = field(default="auto", metadata=option("graph precision", choices=("auto", *PRECISIONS)))
    device: str = field(default="auto", metadata=option("auto, cpu, cuda or cuda:N"))
    threads: int | None = field(
        default=None,
        metadata=option("host inference threads (default: the backend's batch-1 default; 0: all cores)"),
    )
    public_key: str | None = field(
        default=None,
        metadata=PUBLIC_KEY,
    )

    def __post_init__(self) -> None:
        check_choice("--backend", self.backend, ("auto", *BACKENDS))
        check_choice("--precision", self.precision, ("auto", *PRECISIONS))
        check_at_least({"--threads": self.threads}, 0)


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
    record: str | None = field(default=None, metadata=option("write the annotated video here (.mp4)"))
    jsonl: str | None = field(default=None, metadata=option("one JSON record per frame"))
    max_frames: int | None = field(default=None, metadata=option("stop after N classified frames"))
    replay_test_set: str | None = field(
        default=None, metadata=option("stream a labelled test set (e.g. cifar10) as frames")
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
        if self.frame_size != "auto":
            parse_size(self.frame_size)
        if self.serve:
            parse_address(self.serve)
        check_at_least({"--max-frames": self.max_frames}, 1)
        check_at_least({"--fps": self.fps, "--warmup-frames": self.warmup_frames}, 0)


@dataclass(frozen=True)
class ServeOptions:
    """Where Triton listens, how it batches, and what it accepts."""

    host: str = field(
        default="127.0.0.1", metadata=option("address to bind; anything but 127.0.0.1/localhost serves the network")
    )
    http_port: int = field(default=8000, metadata=option("Triton HTTP/REST port"))
    grpc_port: int = field(default=8001, metadata=option("Triton gRPC port"))
    metrics_port: int = field(default=8002, metadata=option("Prometheus metrics port (/metrics)"))
    max_batch: int = field(default=64, metadata=option("largest batch Triton's dynamic batcher forms"))
    queue_delay_us: int = field(
        default=0,
        metadata=option(
            "how long a request may wait for others to batch with, µs (0: batch what is queued; measured faster than "
            "500 with 8 clients, tools/load_test.py)"
        ),
    )
    instances: int = field(default=1, metadata=option("model instances (one Classifier each) serving in parallel"))
    backend: str = field(
        default="auto", metadata=option("inference backend", choices=("auto", "onnxruntime", "tensorrt"))
    )
    precision: str = field(default="auto", metadata=option("graph precision", choices=("auto", *PRECISIONS)))
    threads: int | None = field(
        default=None, metadata=option("host inference threads per instance (default: the backend's)")
    )
    top_k: int = field(
        default=DEFAULT_TOP_K, metadata=option("top-k labels and probabilities in each answer", cli=False)
    )
    max_request_mb: int = field(default=64, metadata=option("largest HTTP request taken, MiB (larger: 413)"))
    max_frame_side: int = field(
        default=4096, metadata=option("largest frame height or width taken, pixels (larger: 400)")
    )

    def __post_init__(self) -> None:
        check_choice("--backend", self.backend, ("auto", "onnxruntime", "tensorrt"))
        check_choice("--precision", self.precision, ("auto", *PRECISIONS))
        check_at_least(
            {
                "--max-batch": self.max_batch,
                "--instances": self.instances,
                "top_k": self.top_k,
                "--max-request-mb": self.max_request_mb,
                "--max-frame-side": self.max_frame_side,
            },
            1,
        )
        check_at_least({"--queue-delay-us": self.queue_delay_us, "--threads": self.threads}, 0)
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        if len(set(ports)) != 3 or not all(0 < p < 65536 for p in ports):
            raise ConfigError(f"http, grpc and metrics ports must be three different ports in 1..65535, got {ports}")

    @property
    def network(self) -> bool:
        return self.host not in LOOPBACK
