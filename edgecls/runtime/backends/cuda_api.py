"""The few CUDA calls the TensorRT backend makes, through pycuda or cuda-python, whichever is installed.

pycuda is the project's choice and what JetPack images and older TensorRT samples use; NVIDIA's samples moved
to cuda-python (`cuda.bindings.runtime`) with TensorRT 10.13, and it installs as wheels where pycuda must be
compiled against a CUDA toolkit. Both adapters give the same small surface: device identity, a stream, pinned
host memory, device memory, asynchronous copies and events for device-side timing, and the calls that free
each of them: the backend keeps one buffer set, grown when a larger batch arrives, and frees everything on close().
"""

from __future__ import annotations

import ctypes
import importlib.util
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import numpy as np

from edgecls.errors import BackendUnavailableError

INSTALL_HINT = (
    "the TensorRT backend needs pycuda or cuda-python: pip install cuda-python "
    "(wheels; on a Jetson pick the major version of JetPack's CUDA) or pip install pycuda (compiles)"
)


def installed_cuda_api() -> str | None:
    if importlib.util.find_spec("pycuda") is not None:
        return "pycuda"
    if importlib.util.find_spec("cuda") is not None and _cudart_spec() is not None:
        return "cuda-python"
    return None


def _cudart_spec():
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except ModuleNotFoundError:
            continue
    return None


class CudaAPI(Protocol):
    """What the TensorRT backend asks of CUDA; `PyCuda` and `CudaPython` each provide it for one device."""

    name: str

    def active(self) -> AbstractContextManager: ...
    def identity(self) -> dict: ...
    def stream(self) -> Any: ...
    def stream_handle(self, stream) -> int: ...
    def pinned(self, shape: tuple, dtype) -> np.ndarray: ...
    def alloc(self, nbytes: int) -> Any: ...
    def to_device(self, device_buffer, host: np.ndarray, stream) -> None: ...
    def to_host(self, host: np.ndarray, device_buffer, stream) -> None: ...
    def event(self) -> Any: ...
    def record(self, event, stream) -> None: ...
    def elapsed_ms(self, start, end) -> float: ...
    def synchronize(self, stream) -> None: ...
    def free(self, device_buffer) -> None: ...
    def memory_info(self) -> tuple[int, int]: ...
    def free_pinned(self, host: np.ndarray) -> None: ...
    def destroy_stream(self, stream) -> None: ...
    def destroy_event(self, event) -> None: ...


def open_cuda(device_index: int = 0) -> CudaAPI:
    """The installed adapter, bound to one device. Raises BackendUnavailableError with the fix if neither is there."""
    kind = installed_cuda_api()
    if kind == "pycuda":
        return PyCuda(device_index)
    if kind == "cuda-python":
        return CudaPython(device_index)
    raise BackendUnavailableError(INSTALL_HINT)


def cuda_device_count() -> tuple[int, str]:
    """CUDA devices the installed adapter can open, and why there are none (no adapter, no driver, no GPU)."""
    kind = installed_cuda_api()
    if kind is None:
        return 0, "neither pycuda nor cuda-python is installed"
    try:
        count = PyCuda.device_count() if kind == "pycuda" else CudaPython.device_count()
    except Exception as exc:  # pycuda raises its own error kinds; both fail with ImportError/OSError without libcuda
        return 0, f"{kind}: {type(exc).__name__}: {exc}"
    return count, "" if count else "the driver reports 0 devices"


class PyCuda:
    name = "pycuda"

    def __init__(self, device_index: int):
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        self.device = cuda.Device(device_index)
        self.context = self.device.retain_primary_context()

    @staticmethod
    def device_count() -> int:
        import pycuda.driver as cuda

        cuda.init()
        return cuda.Device.count()

    @contextmanager
    def active(self):
        self.context.push()
        try:
            yield
        finally:
            self.context.pop()

    def identity(self) -> dict:
        major, minor = self.device.compute_capability()
        sm_count = self.device.get_attribute(self.cuda.device_attribute.MULTIPROCESSOR_COUNT)
        return {
            "gpu": self.device.name(),
            "compute_capability": f"{major}.{minor}",
            "sm_count": int(sm_count),
            "memory_mib": int(self.device.total_memory()) >> 20,
        }

    def stream(self):
        return self.cuda.Stream()

    def stream_handle(self, stream) -> int:
        return stream.handle

    def pinned(self, shape: tuple, dtype) -> np.ndarray:
        return self.cuda.pagelocked_empty(shape, dtype)

    def alloc(self, nbytes: int):
        return self.cuda.mem_alloc(nbytes)

    def to_device(self, device_buffer, host: np.ndarray, stream) -> None:
        self.cuda.memcpy_htod_async(device_buffer, host, stream)

    def to_host(self, host: np.ndarray, device_buffer, stream) -> None:
        self.cuda.memcpy_dtoh_async(host, device_buffer, stream)

    def event(self):
        return self.cuda.Event()

    def record(self, event, stream) -> None:
        event.record(stream)

    def elapsed_ms(self, start, end) -> float:
        return start.time_till(end)

    def synchronize(self, stream) -> None:
        stream.synchronize()

    def free(self, device_buffer) -> None:
        device_buffer.free()

    def memory_info(self) -> tuple[int, int]:
        """(free, total) device memory in bytes."""
        return self.cuda.mem_get_info()

    def free_pinned(self, host: np.ndarray) -> None:
        allocation: Any = host.base  # pagelocked_empty's array is a view of a PagelockedHostAllocation
        allocation.free()

    def destroy_stream(self, stream) -> None:
        pass  # pycuda's Stream and Event release themselves when collected

    def destroy_event(self, event) -> None:
        pass


class CudaPython:
    """cuda-python's runtime API, called as NVIDIA's TensorRT samples call it: every call returns (error, *values)."""

    name = "cuda-python"

    def __init__(self, device_index: int):
        self.rt = self._runtime()
        self.index = device_index
        self._call(self.rt.cudaSetDevice(device_index))

    @staticmethod
    def _runtime():
        try:
            from cuda.bindings import runtime
        except ImportError:  # cuda-python < 12.6
            from cuda import cudart as runtime
        return runtime

    @classmethod
    def device_count(cls) -> int:
        runtime = cls._runtime()
        error, count = runtime.cudaGetDeviceCount()
        if error != runtime.cudaError_t.cudaSuccess:
            raise RuntimeError(f"cudaGetDeviceCount failed: {error.name}")
        return count

    def _call(self, result):
        error, *values = result
        if error != self.rt.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA call failed: {error.name}: {self.rt.cudaGetErrorString(error)[1].decode()}")
        return values[0] if len(values) == 1 else None

    @contextmanager
    def active(self):
        """This device for the block, then the caller's again: the runtime API's current device is per thread, and
        a robot's own CUDA code on another GPU must find its device as it left it (pycuda's push/pop does the same)."""
        previous = self._call(self.rt.cudaGetDevice())
        self._call(self.rt.cudaSetDevice(self.index))
        try:
            yield
        finally:
            if previous != self.index:
                self._call(self.rt.cudaSetDevice(previous))

    def identity(self) -> dict:
        props = self._call(self.rt.cudaGetDeviceProperties(self.index))
        name = props.name.split(b"\0", 1)[0].decode() if isinstance(props.name, bytes) else str(props.name)
        return {
            "gpu": name,
            "compute_capability": f"{props.major}.{props.minor}",
            "sm_count": int(props.multiProcessorCount),
            "memory_mib": int(props.totalGlobalMem) >> 20,
        }

    def stream(self):
        return self._call(self.rt.cudaStreamCreate())

    def stream_handle(self, stream) -> int:
        return int(stream)

    def pinned(self, shape: tuple, dtype) -> np.ndarray:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        address = self._call(self.rt.cudaMallocHost(nbytes))
        return np.frombuffer(memoryview((ctypes.c_byte * nbytes).from_address(address)), dtype=dtype).reshape(shape)

    def alloc(self, nbytes: int) -> int:
        return self._call(self.rt.cudaMalloc(nbytes))

    def to_device(self, device_buffer: int, host: np.ndarray, stream) -> None:
        self._call(
            self.rt.cudaMemcpyAsync(
                device_buffer, host.ctypes.data, host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream
            )
        )

    def to_host(self, host: np.ndarray, device_buffer: int, stream) -> None:
        self._call(
            self.rt.cudaMemcpyAsync(
                host.ctypes.data, device_buffer, host.nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream
            )
        )

    def event(self):
        return self._call(self.rt.cudaEventCreate())

    def record(self, event, stream) -> None:
        self._call(self.rt.cudaEventRecord(event, stream))

    def elapsed_ms(self, start, end) -> float:
        return self._call(self.rt.cudaEventElapsedTime(start, end))

    def synchronize(self, stream) -> None:
        self._call(self.rt.cudaStreamSynchronize(stream))

    def free(self, device_buffer: int) -> None:
        self._call(self.rt.cudaFree(device_buffer))

    def memory_info(self) -> tuple[int, int]:
        error, free, total = self.rt.cudaMemGetInfo()
        self._call((error,))
        return free, total

    def free_pinned(self, host: np.ndarray) -> None:
        self._call(self.rt.cudaFreeHost(host.ctypes.data))

    def destroy_stream(self, stream) -> None:
        self._call(self.rt.cudaStreamDestroy(stream))

    def destroy_event(self, event) -> None:
        self._call(self.rt.cudaEventDestroy(event))
