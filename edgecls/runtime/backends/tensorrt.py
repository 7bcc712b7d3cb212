"""Native TensorRT backend: tensorrt + pycuda or cuda-python (`cuda_api`), pinned host buffers, one stream,
execute_async_v3.

On first use it looks for `model.<precision>.engine` in the bundle whose sidecar matches this GPU,
TensorRT version and ONNX file; failing that it builds one from the bundle's ONNX and caches it under
$EDGECLS_CACHE (default ~/.cache/edgecls/engines), keyed by all four.
"""

from __future__ import annotations

import hashlib
import json
import threading
import warnings
from pathlib import Path

import numpy as np

from edgecls.bundle import Bundle
from edgecls.errors import BundleError, EngineMismatchError
from edgecls.fileio import cache_dir
from edgecls.runtime.backends.base import Backend, BackendInfo
from edgecls.runtime.backends.cuda_api import open_cuda
from edgecls.runtime.engines import (
    build_engine,
    check_engine,
    engine_identity,
    engine_sources,
    require_tensorrt,
    sidecar_path,
)


def engine_cache_dir() -> Path:
    return cache_dir("engines")


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, bundle: Bundle, precision: str = "fp16", device: str = "cuda:0", threads: int | None = None):
        """`threads` is accepted for a uniform interface: TensorRT's work runs on the GPU, not in host threads."""
        super().__init__(bundle, precision, device)
        require_tensorrt()
        import tensorrt as trt

        self.trt = trt
        self.device_index = int(device.split(":")[1]) if ":" in device else 0
        entry = engine_sources(bundle, precision, hasattr(trt.BuilderFlag, "FP16"))
        if entry is None:
            raise BundleError(f"bundle {bundle.root} has no ONNX file for a {precision} engine; export with --{precision}")
        onnx_path = bundle.verified_path(entry)
        self.cuda = open_cuda(self.device_index)
        with self.cuda.active():
            expected = engine_identity(trt, onnx_path, precision, self.device_index)
            self.engine_path = self._find_or_build(onnx_path, expected)
            self.max_batch = int(json.loads(sidecar_path(self.engine_path).read_text())["max_batch"])
            logger = trt.Logger(trt.Logger.WARNING)
            self.engine = trt.Runtime(logger).deserialize_cuda_engine(self.engine_path.read_bytes())
            if self.engine is None:
                raise EngineMismatchError(f"TensorRT could not deserialize {self.engine_path}; rebuild it")
            self.context = self.engine.create_execution_context()
            self.stream = self.cuda.stream()
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
            self.output_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
            self.input_dtype = trt.nptype(self.engine.get_tensor_dtype(self.input_name))
            self.output_dtype = trt.nptype(self.engine.get_tensor_dtype(self.output_name))
            self.buffers: dict[int, tuple] = {}
            self.start, self.end = self.cuda.event(), self.cuda.event()
            self.last_device_ms = 0.0
        self.lock = threading.Lock()

    def _find_or_build(self, onnx_path: Path, expected: dict) -> Path:
        in_bundle = self.bundle.root / f"model.{self.precision}.engine"
        if in_bundle.is_file():
            try:
                check_engine(in_bundle, expected)
                return in_bundle
            except EngineMismatchError as exc:  # never run it; say so, then use (or build) one for this machine
                warnings.warn(f"not using {in_bundle.name}: {exc} Using an engine built here instead.", stacklevel=3)
        key = hashlib.sha256("|".join(str(expected[k]) for k in sorted(expected)).encode()).hexdigest()[:20]
        cached = engine_cache_dir() / f"{key}.engine"
        if not cached.is_file():
            build_engine(onnx_path, cached, self.precision, device_index=self.device_index)
        check_engine(cached, expected)
        return cached

    def _buffers(self, batch: int):
        if batch not in self.buffers:
            shape = (batch, *self.input_shape)
            if not self.context.set_input_shape(self.input_name, shape):
                raise EngineMismatchError(f"TensorRT refused input shape {shape} (profile: batch 1..{self.max_batch})")
            out_shape = tuple(self.context.get_tensor_shape(self.output_name))  # type: ignore[var-annotated,arg-type]  # Dims iterates
            host_in = self.cuda.pinned(shape, self.input_dtype)
            host_out = self.cuda.pinned(out_shape, self.output_dtype)
            self.buffers[batch] = (host_in, host_out, self.cuda.alloc(host_in.nbytes), self.cuda.alloc(host_out.nbytes))
        return self.buffers[batch]

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        if len(batch) > self.max_batch:  # the engine's optimization profile stops at max_batch
            return np.concatenate([self._infer(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)])
        cuda = self.cuda
        with self.lock, cuda.active():
            host_in, host_out, dev_in, dev_out = self._buffers(batch.shape[0])
            if not self.context.set_input_shape(self.input_name, batch.shape):
                raise EngineMismatchError(f"TensorRT refused input shape {batch.shape} (profile: batch 1..{self.max_batch})")
            for name, address in ((self.input_name, dev_in), (self.output_name, dev_out)):
                if not self.context.set_tensor_address(name, int(address)):
                    raise EngineMismatchError(f"TensorRT refused the device address of tensor {name!r}")
            np.copyto(host_in, batch, casting="same_kind")
            cuda.to_device(dev_in, host_in, self.stream)
            cuda.record(self.start, self.stream)
            if not self.context.execute_async_v3(cuda.stream_handle(self.stream)):
                raise RuntimeError("TensorRT execute_async_v3 failed; see the TensorRT log")
            cuda.record(self.end, self.stream)
            cuda.to_host(host_out, dev_out, self.stream)
            cuda.synchronize(self.stream)
            self.last_device_ms = cuda.elapsed_ms(self.start, self.end)
            return host_out.astype(np.float32, copy=True)

    def describe(self) -> BackendInfo:
        return BackendInfo(self.name, self.device, self.precision, self.engine_path.name,
                           (f"tensorrt {self.trt.__version__}", self.cuda.name),
                           detail=f"engine {self.engine_path}")
