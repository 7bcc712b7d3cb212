"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider, whichever is asked for and present."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgecls.bundle import Bundle
from edgecls.errors import BackendUnavailableError, BundleError
from edgecls.runtime.backends.base import Backend, BackendInfo

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def available_devices() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    have = set(ort.get_available_providers())
    return [device for device, provider in PROVIDERS.items() if provider in have]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, bundle: Bundle, precision: str = "fp32", device: str = "cpu", threads: int | None = None,
                 flavour: str | None = None):
        super().__init__(bundle, precision, device)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError("onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu)") from exc
        if device not in PROVIDERS:
            raise BackendUnavailableError(f"onnxruntime device must be one of {', '.join(PROVIDERS)}, got {device!r}")
        if device not in available_devices():
            raise BackendUnavailableError(
                f"onnxruntime here has no {PROVIDERS[device]} (it has {', '.join(ort.get_available_providers())}); "
                "install onnxruntime-gpu for CUDA/TensorRT, or use device='cpu'")
        target = "tensorrt" if device == "tensorrt" else "cpu"
        entry = bundle.find("onnx", precision, target, flavour)
        if entry is None:
            raise BundleError(f"bundle {bundle.root} has no {precision} ONNX model; export it with "
                              f"`edgecls export ... --{precision}`" if precision != "fp32" else f"bundle {bundle.root} has no model.onnx")
        self.entry = entry
        path = bundle.verified_path(entry)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        providers: list = [PROVIDERS[device]]
        if device == "tensorrt":
            cache = Path(os.environ.get("EDGECLS_CACHE", Path.home() / ".cache" / "edgecls")) / "ort-trt"
            providers = [("TensorrtExecutionProvider", {"trt_fp16_enable": precision != "fp32", "trt_int8_enable": precision == "int8",
                                                        "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}),
                         "CUDAExecutionProvider"]
        if device != "cpu":
            providers.append("CPUExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError(f"{path} cannot be loaded by onnxruntime ({type(exc).__name__}: {str(exc)[:200]}); "
                              "the file is corrupt or was not written by edgecls: re-run `edgecls export`") from exc
        self.input_name = self.session.get_inputs()[0].name
        self.providers = tuple(self.session.get_providers())

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch})[0].astype(np.float32, copy=False)

    def describe(self) -> BackendInfo:
        flavour = f" ({self.entry.flavour})" if self.entry.flavour else ""
        return BackendInfo(self.name, self.device, self.precision, self.entry.name, self.providers,
                           detail=f"{self.entry.name}{flavour} on {self.providers[0]}")
