"""Native TensorRT backend: tensorrt + pycuda or cuda-python (`cuda_api`), pinned host buffers, one stream,
execute_async_v3.

On first use it takes the engine for this GPU, TensorRT version, precision and ONNX file from the local cache
($EDGECLS_CACHE, default ~/.cache/edgecls/engines), building it there from the bundle's verified ONNX file if it
is missing or damaged. An engine in the bundle directory is used only when the sealed (and signed) manifest lists
its sha256; any other is ignored with a warning, so a planted engine never runs.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgecls.bundle import Bundle
from edgecls.errors import BundleError, EngineMismatchError
from edgecls.feature_distance import OUTPUT as FEATURES
from edgecls.runtime.backends.base import Backend, BackendInfo, stack
from edgecls.runtime.backends.cuda_api import open_cuda
from edgecls.runtime.engines import (
    build_engine,
    cached_engine_path,
    check_engine,
    engine_identity,
    engine_source,
    require_tensorrt,
)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, bundle: Bundle, precision: str = "fp16", device: str = "cuda:0", threads: int | None = None):
        """`threads` is accepted for a uniform interface: TensorRT's work runs on the GPU, not in host threads."""
        super().__init__(bundle, precision, device)
        require_tensorrt()
        import tensorrt as trt

        self.trt = trt
        self.device_index = int(device.split(":")[1]) if ":" in device else 0
        entry = engine_source(bundle, precision, trt)
        if entry is None:
            raise BundleError(
                f"bundle {bundle.root} has no ONNX file for a {precision} engine; export with --{precision}"
            )
        onnx = bundle.read_verified(entry)
        self.source_graph = entry.name  # what doctor compares the engine with
        self.cuda = open_cuda(self.device_index)
        with self.cuda.active():
            expected = engine_identity(trt, entry.sha256, precision, self.device_index)
            self.engine_path, data, sidecar = self._find_or_build(onnx, entry.name, expected)
            self.max_batch = int(sidecar["max_batch"])
            self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(data)
            if self.engine is None:
                raise EngineMismatchError(f"TensorRT could not deserialize {self.engine_path}; delete it to rebuild")
            self.context = self.engine.create_execution_context()
            self.stream = self.cuda.stream()
            names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
            self.input_name = next(n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
            outputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
            self.has_features = FEATURES in outputs
            logits = (bundle.manifest.output or {}).get("name", "logits")
            self.output_names = [logits if logits in outputs else outputs[0]] + (
                [FEATURES] if self.has_features else []
            )
            self.input_dtype = trt.nptype(self.engine.get_tensor_dtype(self.input_name))
            self.output_dtypes = {n: trt.nptype(self.engine.get_tensor_dtype(n)) for n in self.output_names}
            self.capacity, self.closed = 0, False
            self.buffers: tuple | None = None
            self.start, self.end = self.cuda.event(), self.cuda.event()
            self.last_device_ms = 0.0
        self.lock = threading.Lock()

    def _find_or_build(self, onnx: bytes, onnx_name: str, expected: dict) -> tuple[Path, bytes, dict]:
        """(path, bytes, sidecar) of an engine for this machine: the bundle's own if its manifest vouches for it, else
        the local cache's, built (or rebuilt, when damaged or stale) from the verified ONNX file."""
        in_bundle = self.bundle.root / f"model.{self.precision}.engine"
        if in_bundle.is_file():
            data = in_bundle.read_bytes()
            listed = self.bundle.engine_record(in_bundle.name, hashlib.sha256(data).hexdigest())
            try:
                if listed is None:
                    raise EngineMismatchError(
                        "the bundle's manifest does not list it, so its signature does not cover it"
                    )
                return in_bundle, data, check_engine(in_bundle, expected, data, recorded=listed)
            except EngineMismatchError as exc:  # never run it; say so, then use (or build) one for this machine
                warnings.warn(f"not using {in_bundle}: {exc}. Using the engine cache instead.", stacklevel=3)
        cached = cached_engine_path(expected)
        if cached.is_file():
            data = cached.read_bytes()
            try:
                return cached, data, check_engine(cached, expected, data)
            except EngineMismatchError as exc:
                warnings.warn(f"rebuilding the cached engine {cached}: {exc}", stacklevel=3)
        build_engine(onnx, onnx_name, cached, self.precision, device_index=self.device_index)
        data = cached.read_bytes()
        return cached, data, check_engine(cached, expected, data)

    def _buffers(self, batch: int) -> tuple[np.ndarray, Any, dict[str, tuple[np.ndarray, Any]]]:
        """One pinned + device buffer per tensor for the largest batch seen so far; a smaller batch uses their first
        rows. A larger one frees the set and allocates anew, so memory stays that of the largest batch (≤ max_batch).
        (host input, device input, {output: (host, device)})."""
        if batch > self.capacity:
            shape = (batch, *self.input_shape)
            if not self.context.set_input_shape(self.input_name, shape):
                raise EngineMismatchError(f"TensorRT refused input shape {shape} (profile: batch 1..{self.max_batch})")
            self._free_buffers()
            host_in = self.cuda.pinned(shape, self.input_dtype)
            outputs = {}
            for name in self.output_names:
                out_shape = tuple(self.context.get_tensor_shape(name))  # type: ignore[var-annotated,arg-type]  # Dims iterates
                host = self.cuda.pinned(out_shape, self.output_dtypes[name])
                outputs[name] = (host, self.cuda.alloc(host.nbytes))
            self.buffers = (host_in, self.cuda.alloc(host_in.nbytes), outputs)
            self.capacity = batch
        host_in, dev_in, outputs = self.buffers or ()
        return host_in[:batch], dev_in, {name: (host[:batch], dev) for name, (host, dev) in outputs.items()}

    def _free_buffers(self) -> None:
        if self.buffers is not None:
            host_in, dev_in, outputs = self.buffers
            self.buffers, self.capacity = None, 0
            for host, device in [(host_in, dev_in), *outputs.values()]:
                self.cuda.free(device)
                self.cuda.free_pinned(host)

    def close(self) -> None:
        """Free every buffer, the stream and the events, and drop the engine; the backend is unusable after."""
        with self.lock, self.cuda.active():
            if self.closed:
                return
            self.closed = True
            self.cuda.synchronize(self.stream)
            self._free_buffers()
            for event in (self.start, self.end):
                self.cuda.destroy_event(event)
            self.cuda.destroy_stream(self.stream)
            self.stream = self.start = self.end = None
            del self.context, self.engine  # TensorRT frees them with the last reference

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        if len(batch) > self.max_batch:  # the engine's optimization profile stops at max_batch
            return stack([self._infer(batch[i : i + self.max_batch]) for i in range(0, len(batch), self.max_batch)])
        cuda = self.cuda
        with self.lock, cuda.active():
            if self.closed:
                raise RuntimeError("this TensorRT backend was closed; load the Classifier again")
            host_in, dev_in, outputs = self._buffers(batch.shape[0])
            if not self.context.set_input_shape(self.input_name, batch.shape):
                raise EngineMismatchError(
                    f"TensorRT refused input shape {batch.shape} (profile: batch 1..{self.max_batch})"
                )
            addresses = [(self.input_name, dev_in)] + [(name, dev) for name, (_, dev) in outputs.items()]
            for name, address in addresses:
                if not self.context.set_tensor_address(name, int(address)):
                    raise EngineMismatchError(f"TensorRT refused the device address of tensor {name!r}")
            np.copyto(host_in, batch, casting="same_kind")
            cuda.to_device(dev_in, host_in, self.stream)
            cuda.record(self.start, self.stream)
            if not self.context.execute_async_v3(cuda.stream_handle(self.stream)):
                raise RuntimeError("TensorRT execute_async_v3 failed; see the TensorRT log")
            cuda.record(self.end, self.stream)
            for host, dev in outputs.values():
                cuda.to_host(host, dev, self.stream)
            cuda.synchronize(self.stream)
            self.last_device_ms = cuda.elapsed_ms(self.start, self.end)
            answers = [host.astype(np.float32, copy=True) for host, _ in outputs.values()]
            return answers[0], answers[1] if self.has_features else None

    def describe(self) -> BackendInfo:
        return BackendInfo(
            self.name,
            self.device,
            self.precision,
            self.engine_path.name,
            (f"tensorrt {self.trt.__version__}", self.cuda.name),
            detail=f"engine {self.engine_path}",
        )
