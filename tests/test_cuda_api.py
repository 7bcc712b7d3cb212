"""The CUDA adapter of the TensorRT backend: cuda-python's real API names, error handling, and the install hint."""

import ast
import ctypes
import enum
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edgecls.errors import BackendUnavailableError
from edgecls.runtime.backends import cuda_api

SOURCE = Path(cuda_api.__file__)


def _runtime_names() -> set[str]:
    """Every `self.rt.X` / `runtime.X` the cuda-python adapter calls, read from its source."""
    names = set()
    for node in ast.walk(ast.parse(SOURCE.read_text())):
        if isinstance(node, ast.Attribute):
            base = node.value
            if (isinstance(base, ast.Attribute) and base.attr == "rt" and getattr(base.value, "id", "") == "self") or \
                    getattr(base, "id", "") == "runtime":
                names.add(node.attr)
    return names


@pytest.mark.skipif(importlib.util.find_spec("cuda") is None, reason="cuda-python is not installed")
def test_every_cuda_python_call_exists_in_the_installed_runtime_module():
    runtime = cuda_api.CudaPython._runtime()
    names = _runtime_names()
    assert {"cudaMemcpyAsync", "cudaMallocHost", "cudaEventElapsedTime"} <= names
    assert sorted(n for n in names if not hasattr(runtime, n)) == []


@pytest.mark.skipif(importlib.util.find_spec("cuda") is None or importlib.util.find_spec("pycuda") is not None,
                    reason="needs cuda-python without pycuda")
def test_without_a_driver_the_device_count_is_zero_with_the_reason(monkeypatch):
    count, why = cuda_api.cuda_device_count()
    if count:
        pytest.skip("this machine has a CUDA device")
    assert why.startswith("cuda-python:") and "cuda" in why.lower()


def test_without_pycuda_or_cuda_python_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setattr(cuda_api, "installed_cuda_api", lambda: None)
    with pytest.raises(BackendUnavailableError, match="pip install cuda-python"):
        cuda_api.open_cuda(0)
    assert cuda_api.cuda_device_count() == (0, "neither pycuda nor cuda-python is installed")


class _Error(enum.Enum):
    cudaSuccess = 0
    cudaErrorMemoryAllocation = 2


class FakeRuntime:
    """cuda-python's calling convention, (error, *values), over host memory."""

    cudaError_t = _Error
    keep: list = []

    def __init__(self, fail: bool = False):
        self.fail = fail

    def cudaSetDevice(self, index):
        return (_Error.cudaSuccess,)

    def cudaMallocHost(self, nbytes):
        if self.fail:
            return _Error.cudaErrorMemoryAllocation, None
        buffer = ctypes.create_string_buffer(nbytes)
        self.keep.append(buffer)
        return _Error.cudaSuccess, ctypes.addressof(buffer)

    def cudaGetErrorString(self, error):
        return _Error.cudaSuccess, b"out of memory"


def test_cuda_python_pinned_buffers_are_numpy_views_and_errors_are_named(monkeypatch):
    monkeypatch.setattr(cuda_api.CudaPython, "_runtime", staticmethod(lambda: FakeRuntime()))
    adapter = cuda_api.CudaPython(0)
    host = adapter.pinned((2, 3), np.float32)
    host[:] = 7
    assert host.shape == (2, 3) and host.dtype == np.float32 and host.sum() == 42
    assert bytes(FakeRuntime.keep[-1])[:4] == np.float32(7).tobytes()  # the array is a view of the pinned memory
    monkeypatch.setattr(cuda_api.CudaPython, "_runtime", staticmethod(lambda: FakeRuntime(fail=True)))
    with pytest.raises(RuntimeError, match="cudaErrorMemoryAllocation: out of memory"):
        cuda_api.CudaPython(0).pinned((4,), np.float32)
