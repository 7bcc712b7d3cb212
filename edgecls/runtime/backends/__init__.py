"""Backend registry and the `auto` choice: the best engine this machine has, and why it was picked."""

from __future__ import annotations

import importlib
import importlib.util

from edgecls.bundle import Bundle
from edgecls.errors import BackendUnavailableError, ConfigError
from edgecls.names import BACKENDS, PRECISIONS
from edgecls.runtime.backends.base import Backend, BackendInfo
from edgecls.runtime.backends.cuda_api import cuda_device_count, installed_cuda_api
from edgecls.runtime.engines import tensorrt_installed

_BACKENDS = {
    "onnxruntime": ("edgecls.runtime.backends.onnxruntime", "OnnxRuntimeBackend"),
    "tensorrt": ("edgecls.runtime.backends.tensorrt", "TensorRTBackend"),
}
_REGISTERED: dict[str, type[Backend]] = {}
BACKEND_NAMES = BACKENDS  # onnxruntime and tensorrt here; torch defined with training, which registers it


def register_backend(cls: type[Backend]) -> type[Backend]:
    """A backend defined above the runtime adds itself here when imported: the torch backend lives with training
    (`edgecls.train.torch_backend`), so the runtime never imports torch or training code."""
    _REGISTERED[cls.name] = cls
    return cls


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def tensorrt_unavailable() -> str | None:
    """Why the TensorRT backend cannot run here (None when it can): the one answer `auto`, doctor and tests share."""
    if not tensorrt_installed():
        return "TensorRT is not installed"
    if installed_cuda_api() is None:
        return "TensorRT is installed but neither pycuda nor cuda-python"
    devices, problem = cuda_device_count()
    return None if devices else f"TensorRT is installed but no CUDA device is usable ({problem})"


def backend_class(name: str) -> type[Backend]:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in _BACKENDS:
        if name in BACKEND_NAMES:
            raise ConfigError(
                f"backend {name!r} is defined with training: import edgecls.train.torch_backend first "
                "(PyTorch installed: pip install 'edgecls[train]')"
            )
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(BACKEND_NAMES)} or 'auto'")
    module, cls = _BACKENDS[name]
    return getattr(importlib.import_module(module), cls)


def _has_precision(bundle: Bundle, precision: str, target: str | None = None) -> bool:
    entry = bundle.find("onnx", precision, target)
    return entry is not None and (target is None or entry.target in (target, "any"))


def choose(
    bundle: Bundle, backend: str = "auto", precision: str = "auto", device: str = "auto"
) -> tuple[str, str, str, str]:
    """(backend, precision, device, reason) for the request, resolving every 'auto'."""
    if precision != "auto" and precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)} or 'auto', got {precision!r}")
    if backend == "auto":
        if tensorrt_installed() and installed_cuda_api():
            devices, problem = cuda_device_count()
            if devices:
                backend, why = (
                    "tensorrt",
                    f"tensorrt and {installed_cuda_api()} are installed and see {devices} CUDA device(s)",
                )
            else:
                backend, why = "onnxruntime", f"TensorRT is installed but no CUDA device is usable ({problem})"
        else:
            backend = "onnxruntime"
            why = (
                "TensorRT is not installed"
                if not tensorrt_installed()
                else "TensorRT is installed but neither pycuda nor cuda-python"
            )
    else:
        backend_class(backend)
        why = "asked for"
    if device == "auto":
        if backend == "tensorrt":
            device = "cuda:0"
        elif backend == "onnxruntime":
            from edgecls.runtime.backends.onnxruntime import available_devices

            devices = available_devices()
            device = "cuda" if "cuda" in devices else "cpu"
            why += f"; onnxruntime offers {', '.join(devices) or 'nothing'}"
        else:
            device = "cpu"
    if precision == "auto":
        if device == "cpu":
            precision = "int8" if _has_precision(bundle, "int8", "cpu") else "fp32"
            why += (
                "; on a CPU the U8S8 INT8 graph is fastest"
                if precision == "int8"
                else "; no CPU INT8 graph in the bundle"
            )
        elif backend == "tensorrt":
            precision, why = _tensorrt_precision(bundle, why)
        else:
            precision = "fp16" if _has_precision(bundle, "fp16") else "fp32"
            why += f"; {precision} is the fastest this GPU path has in the bundle"
    return backend, precision, device, why


def _tensorrt_precision(bundle: Bundle, why: str) -> tuple[str, str]:
    """The fastest engine this TensorRT can build from the bundle (8.6 cannot build the default INT8 graph)."""
    import tensorrt as trt

    from edgecls.runtime.engines import buildable_precisions

    can, cannot = buildable_precisions(bundle, trt)
    if not can:
        raise BackendUnavailableError(
            f"TensorRT {trt.__version__} can build no engine from {bundle.root}: " + "; ".join(cannot.values())
        )
    precision = can[0]
    why += f"; {precision} is the fastest engine TensorRT {trt.__version__} builds from this bundle"
    if precision != "int8" and "int8" in cannot and _has_precision(bundle, "int8", "tensorrt"):
        why += f" (not int8: {cannot['int8']})"
    return precision, why


def create_backend(bundle: Bundle, backend: str, precision: str, device: str, threads: int | None = None) -> Backend:
    cls = backend_class(backend)
    try:
        return cls(bundle, precision=precision, device=device, threads=threads)
    except ImportError as exc:
        raise BackendUnavailableError(f"backend {backend} cannot be used here: {exc}") from exc


def available_backends() -> list[str]:
    """Backends whose engine is importable here (without importing it)."""
    have = []
    if _installed("onnxruntime"):
        have.append("onnxruntime")
    if tensorrt_installed() and installed_cuda_api():
        have.append("tensorrt")
    if _installed("torch"):
        have.append("torch")
    return have


__all__ = [
    "BACKEND_NAMES",
    "Backend",
    "BackendInfo",
    "available_backends",
    "backend_class",
    "choose",
    "create_backend",
    "register_backend",
]
