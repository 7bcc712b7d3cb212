"""`edgecls serve`: a bundle behind NVIDIA Triton Inference Server (no torch needed).

Two Triton models per bundle, both answering with the outputs of `triton_schema` (label, index, confidence, top-k
indices, labels and probabilities, logits):
- `<model>`: raw uint8 frames (H×W×C, BGR as OpenCV gives them), preprocessed on the server by the bundle's
  own policy, exactly as `Classifier.predict` does;
- `<model>_tensor`: ready N×C×H×W float32 tensors (the bundle's normalization already applied).

Both are the runtime's Python-backend model (`triton_model.py`) in a model repository written here: Triton runs one
stub process per model instance, each with its own `Classifier` (the backend is the runtime's own choice: ONNX
Runtime on a CPU, TensorRT where present), and its dynamic batcher merges concurrent requests into one inference
call. PyTriton is used for what it ships: the tritonserver binary and its Python-backend stubs (`tritonserver.py`
starts and watches the server). Its own binding (`triton.bind`) is not used: it puts a ZeroMQ hop and a second
Python process behind every request, and cost about 4× the server CPU per request (docs/serving.md).

Clients reach Triton through edgecls' two doors, HTTP (`gateway.py`) and gRPC (`grpc_gateway.py`), which check each
request against these two inputs by the same rules before Triton allocates anything; Triton's own endpoints listen
on loopback only. A frame the runtime refuses is answered INVALID_ARGUMENT (HTTP 400) with the runtime's message.

Two traps, handled here: the Python backend's stub needs this interpreter's shared libpython on the library
path, and a stub built for another Python minor version fails to start; both are checked before starting.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import sys
import sysconfig
import tempfile
from pathlib import Path

from edgecls.bundle import PUBLIC_KEY_ENV
from edgecls.errors import BackendUnavailableError, ServerDiedError
from edgecls.runtime.classifier import Classifier
from edgecls.serving.gateway import Gateway
from edgecls.serving.options import ServeOptions
from edgecls.serving.triton_schema import (
    MODEL_FILE,
    ModelInput,
    frames_input,
    python_model_config,
    python_path,
    tensors_input,
)
from edgecls.serving.tritonserver import TritonServer
from edgecls.signing import public_key_pem

INSTALL_HINT = "edgecls serve needs NVIDIA PyTriton (Linux x86-64 or arm64, glibc ≥ 2.35): pip install 'edgecls[serve]'"


def pytriton_unavailable() -> str | None:
    """Why PyTriton cannot serve here, or None."""
    if importlib.util.find_spec("pytriton") is None:
        return INSTALL_HINT
    if not sys.platform.startswith("linux"):
        return f"PyTriton runs on Linux only, this is {sys.platform}"
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        return (
            f"this Python ({sys.executable}) has no shared libpython, which Triton's Python backend stub needs; use a "
            "Python built with --enable-shared (Debian's python3, pyenv with PYTHON_CONFIGURE_OPTS=--enable-shared)"
        )
    from pytriton.utils.distribution import get_stub_path

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not get_stub_path(version).is_file():
        return f"this PyTriton has no Python-backend stub for Python {version}"
    return None


def _model_config(name: str, model_input: ModelInput, clf: Classifier, options: ServeOptions, pem: str) -> str:
    parameters = {
        "input": model_input.name,
        "bundle": str(clf.bundle.root.resolve()),
        "backend": clf.info.name,  # what was resolved and checked here, not "auto" resolved again
        "precision": clf.info.precision,
        "device": clf.info.device,
        "threads": "" if options.threads is None else str(options.threads),
        "top_k": str(clf.top_k),
        "public_key": pem,
        "python_path": python_path(),
    }
    return python_model_config(
        name,
        model_input,
        clf.top_k,
        len(clf.classes),
        options.max_batch,
        parameters,
        queue_delay_us=options.queue_delay_us,
        instances=options.instances,
    )


def write_repository(root: Path, clf: Classifier, options: ServeOptions, public_key=None) -> dict[str, ModelInput]:
    """The Triton model repository of `edgecls serve`: `<model>` (frames) and `<model>_tensor` (tensors), each
    the runtime's Python-backend model (`triton_model.py`) loading the bundle in place. Returns each model's input."""
    key = os.environ.get(PUBLIC_KEY_ENV) if public_key is None else public_key
    name, pem = clf.bundle.manifest.model, public_key_pem(key) if key else ""
    models = {name: frames_input(), f"{name}_tensor": tensors_input(clf.bundle.input)}
    model_file = MODEL_FILE.read_bytes()
    for model, model_input in models.items():
        (root / model / "1").mkdir(parents=True)
        (root / model / "1" / "model.py").write_bytes(model_file)
        (root / model / "labels.txt").write_text("\n".join(clf.classes) + "\n")
        (root / model / "config.pbtxt").write_text(_model_config(model, model_input, clf, options, pem))
    return models


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _open_doors(options: ServeOptions, models: dict[str, ModelInput], internal_http: int, internal_grpc: int) -> list:
    """The HTTP and gRPC doors, started; opened once Triton is ready, so a client that finds a door open finds models
    behind it."""
    from edgecls.serving.grpc_gateway import GrpcGateway  # grpcio and tritonclient come with PyTriton

    limits = dict(
        max_batch=options.max_batch, max_side=options.max_frame_side, max_request_bytes=options.max_request_mb << 20
    )
    doors = [Gateway(options.host, options.http_port, internal_http, models, **limits)]
    try:
        doors.append(GrpcGateway(options.host, options.grpc_port, internal_grpc, models, **limits))
    except BaseException:
        doors[0].close()
        raise
    for door in doors:
        door.start()
    return doors


def _stop_on_signals() -> tuple[list, dict]:
    """SIGINT and SIGTERM raise KeyboardInterrupt once (a second signal must not break the first shutdown); returns
    the signals received and the handlers to put back. SIGINT too: a server started in the background by a shell
    inherits SIGINT ignored, and must still stop on it."""
    stopping = []

    def stop(signum, frame) -> None:
        if not stopping:
            stopping.append(signum)
            raise KeyboardInterrupt

    return stopping, {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}


def _raise_if_lost(lost: list[str]) -> None:
    if lost:
        raise ServerDiedError(
            f"the model instance serving {', '.join(lost)} died (its Triton stub process exited: killed, out of "
            "memory, or crashed on a request) and Triton does not restart it: stopping, non-zero, so a "
            "supervisor restarts `edgecls serve`"
        )


def serve(bundle_dir: str, options: ServeOptions, public_key=None, ready=None) -> None:
    """Serve until SIGINT/SIGTERM. `ready(name, classifier)` is called once the models answer. That classifier is
    loaded here first, so a bad bundle or a missing backend is reported plainly and not in Triton's log, and closed
    before Triton starts (its engine and buffers freed: the model instances run their own); `ready` may still ask it
    to describe itself."""
    reason = pytriton_unavailable()
    if reason:
        raise BackendUnavailableError(reason)
    clf = Classifier.load(
        bundle_dir,
        options.backend,
        options.precision,
        top_k=options.top_k,
        threads=options.threads,
        public_key=public_key,
    )
    stopping, previous = _stop_on_signals()
    workdir = tempfile.TemporaryDirectory(prefix="edgecls-serve-")
    server, doors = None, []
    try:  # a signal anywhere inside stops it the same way
        root = Path(workdir.name)
        models = write_repository(root / "models", clf, options, public_key)
        clf.close()  # checked; the instances load their own: on an 8 GB Jetson this one's engine would sit idle beside
        internal_http, internal_grpc = _free_loopback_port(), _free_loopback_port()
        server = TritonServer(
            root / "models",
            root,
            internal_http,
            grpc=("127.0.0.1", internal_grpc),
            metrics=(options.host, options.metrics_port),
        )
        server.start()
        server.wait_ready()
        doors += _open_doors(options, models, internal_http, internal_grpc)
        if ready:
            ready(clf.bundle.manifest.model, clf)
        _raise_if_lost(server.wait())
    except KeyboardInterrupt:
        if not stopping:
            raise
    finally:
        for door in doors:
            door.close()
        if server:
            server.stop()
        clf.close()
        workdir.cleanup()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not stopping:  # wait() returns on its own only when the Triton process died
        raise ServerDiedError(
            "Triton Inference Server stopped without being asked (crashed, killed or out of memory; its "
            "log above says which): exiting non-zero so a supervisor restarts `edgecls serve`"
        )
