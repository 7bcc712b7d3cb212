"""How `edgecls serve` runs (`ServeOptions`): where Triton listens, how it batches, and what the doors accept.
Declared once with its help; checked when made, before a port is opened."""

from __future__ import annotations

from dataclasses import dataclass, field

from edgecls.errors import ConfigError
from edgecls.names import PRECISIONS
from edgecls.options import LOOPBACK, check_at_least, check_choice, option
from edgecls.runtime.options import DEFAULT_TOP_K


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
    max_request_mb: int = field(
        default=64, metadata=option("largest request taken over HTTP or gRPC, MiB (larger: 413)")
    )
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
