"""`edgecls serve`: a bundle behind NVIDIA Triton Inference Server, through PyTriton (no torch needed).

Two Triton models per bundle, both answering with the outputs of `triton_schema` (label, index, confidence, top-k
indices, labels and probabilities, logits):
- `<model>`: raw uint8 frames (H×W×C, BGR as OpenCV gives them), preprocessed on the server by the bundle's
  own policy, exactly as `Classifier.predict` does;
- `<model>_tensor`: ready N×C×H×W float32 tensors (the bundle's normalization already applied).

HTTP clients reach Triton through edgecls' gateway (`gateway.py`), which checks each request against these two
inputs before Triton allocates anything; Triton's own HTTP endpoint listens on loopback only. gRPC clients reach
Triton directly.

Triton's dynamic batcher merges concurrent requests (of equal shape) into one inference call. The backend is
the runtime's own choice (ONNX Runtime on a CPU, TensorRT where present); `instances` > 1 loads one
Classifier per Triton model instance.

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
from contextlib import contextmanager

import numpy as np

from edgecls.errors import BackendUnavailableError, ServerDiedError
from edgecls.runtime.classifier import Classifier
from edgecls.runtime.gateway import Gateway, frames_input, tensors_input
from edgecls.runtime.options import ServeOptions
from edgecls.runtime.triton_schema import NUMPY, OUTPUTS, answer, label_bytes, output_width

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


def prepare_environment() -> None:
    """Put this interpreter's libpython on the library path the Triton server process inherits."""
    libdir = sysconfig.get_config_var("LIBDIR")
    paths = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p]
    if libdir and libdir not in paths:
        os.environ["LD_LIBRARY_PATH"] = os.pathsep.join([libdir, *paths])


class _Handler:
    """One Triton model instance: its own Classifier, so instances run in parallel. Each call gets the requests the
    dynamic batcher merged (of one shape), runs them as one batch and answers each with the outputs it asked for:
    PyTriton's `@batch` would pass all seven through shared memory to Triton, which then drops the unrequested."""

    def __init__(self, clf: Classifier):
        self.clf = clf
        self.labels = label_bytes(clf.classes)

    def frames(self, requests: list) -> list[dict[str, np.ndarray]]:
        return self._answer(requests, "frame", lambda frames: self.clf.preprocess_batch(list(frames)))

    def tensors(self, requests: list) -> list[dict[str, np.ndarray]]:
        return self._answer(requests, "input", lambda tensors: np.ascontiguousarray(tensors, dtype=np.float32))

    def _answer(self, requests: list, name: str, prepare) -> list[dict[str, np.ndarray]]:
        inputs = [request[name] for request in requests]
        outputs = answer(self.clf, prepare(np.concatenate(inputs)), self.labels)
        answers, start = [], 0
        for request, items in zip(requests, inputs, strict=True):
            wanted = request.requested_output_names or outputs
            answers.append({out: outputs[out][start : start + len(items)] for out in wanted})
            start += len(items)
        return answers


def _bind(triton, bundle_dir: str, options: ServeOptions, public_key) -> tuple[str, Classifier]:
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

    handlers = [
        _Handler(
            Classifier.load(
                bundle_dir,
                options.backend,
                options.precision,
                top_k=options.top_k,
                threads=options.threads,
                public_key=public_key,
            )
        )
        for _ in range(options.instances)
    ]
    clf = handlers[0].clf
    name, spec, k = clf.bundle.manifest.model, clf.bundle.input, clf.top_k
    outputs = [
        Tensor(name=out, dtype=NUMPY[kind], shape=(output_width(out, k, len(clf.classes)),)) for out, kind in OUTPUTS
    ]
    config = ModelConfig(
        max_batch_size=options.max_batch, batcher=DynamicBatcher(max_queue_delay_microseconds=options.queue_delay_us)
    )
    triton.bind(
        model_name=name,
        infer_func=[h.frames for h in handlers],
        inputs=[Tensor(name="frame", dtype=np.uint8, shape=(-1, -1, -1))],
        outputs=outputs,
        config=config,
    )
    triton.bind(
        model_name=f"{name}_tensor",
        infer_func=[h.tensors for h in handlers],
        inputs=[Tensor(name="input", dtype=np.float32, shape=(spec.channels, spec.size, spec.size))],
        outputs=outputs,
        config=config,
    )
    return name, clf


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def _tritonserver_in_its_own_process_group():
    """Start tritonserver in a process group of its own, so a terminal's Ctrl-C reaches `edgecls serve` alone, which
    then stops Triton once (PyTriton's stop sends it SIGINT). In the terminal's group it was signalled twice, by
    the terminal and by PyTriton, and on the second SIGINT Triton exits at once, with a failure and its warnings.
    PyTriton starts the server through `sh` (nothing else here uses it), whose `new_group` default is set while
    serving."""
    import sh

    previous = sh.Command._call_args["new_group"]
    sh.Command._call_args["new_group"] = True
    try:
        yield
    finally:
        sh.Command._call_args["new_group"] = previous


def serve(bundle_dir: str, options: ServeOptions, public_key=None, ready=None) -> None:
    """Serve until SIGINT/SIGTERM. `ready(name, classifier)` is called once the models answer."""
    reason = pytriton_unavailable()
    if reason:
        raise BackendUnavailableError(reason)
    prepare_environment()
    from pytriton.triton import Triton, TritonConfig

    internal_http = _free_loopback_port()
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=internal_http,
        grpc_address=options.host,
        grpc_port=options.grpc_port,
        metrics_address=options.host,
        metrics_port=options.metrics_port,
        allow_metrics=True,
        allow_cpu_metrics=True,
        allow_gpu_metrics=False,
        exit_timeout_secs=5,
        log_verbose=0,
    )
    stopping = []

    def stop(signum, frame) -> None:
        if not stopping:  # one clean shutdown path for Ctrl-C and SIGTERM; a second signal must not break the first
            stopping.append(signum)
            raise KeyboardInterrupt

    # SIGINT too: a server started in the background by a shell inherits SIGINT ignored, and must still stop on it.
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    gateway = None
    try:
        # a signal anywhere inside (even before serve()) stops it the same way
        with _tritonserver_in_its_own_process_group(), Triton(config=config) as triton:
            name, clf = _bind(triton, bundle_dir, options, public_key)
            gateway = Gateway(
                options.host,
                options.http_port,
                internal_http,
                {name: frames_input(), f"{name}_tensor": tensors_input(clf.bundle.input)},
                max_batch=options.max_batch,
                max_side=options.max_frame_side,
                max_request_bytes=options.max_request_mb << 20,
            )
            gateway.start()
            triton.run()
            if ready:
                ready(name, clf)
            triton.serve()
    except KeyboardInterrupt:
        if not stopping:
            raise
    finally:
        if gateway:
            gateway.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if not stopping:  # serve() returns on its own only when the Triton process or its model proxies died
        raise ServerDiedError(
            "Triton Inference Server stopped without being asked (crashed, killed or out of memory; its "
            "log above says which): exiting non-zero so a supervisor restarts `edgecls serve`"
        )
