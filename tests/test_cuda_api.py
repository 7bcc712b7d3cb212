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
            if (
                isinstance(base, ast.Attribute) and base.attr == "rt" and getattr(base.value, "id", "") == "self"
            ) or getattr(base, "id", "") == "runtime":
                names.add(node.attr)
    return names


@pytest.mark.skipif(importlib.util.find_spec("cuda") is None, reason="cuda-python is not installed")
def test_every_cuda_python_call_exists_in_the_installed_runtime_module():
    runtime = cuda_api.CudaPython._runtime()
    names = _runtime_names()
    assert {"cudaMemcpyAsync", "cudaMallocHost", "cudaEventElapsedTime"} <= names
    assert sorted(n for n in names if not hasattr(runtime, n)) == []


@pytest.mark.parametrize("version", ["12.9.10"])  # the [jetson] extra pins cuda-python 12 (JetPack 6: CUDA 12.6)
def test_every_cuda_python_call_exists_in_the_12x_bindings_jetpack_uses(version, tmp_path):
    """The adapter's names against cuda-bindings 12 as well as the installed 13: the wheel is downloaded and imported in
    a child process ahead of the installed one (the shared `cuda.pathfinder` comes from the environment)."""
    import json
    import subprocess
    import sys
    import zipfile

    if importlib.util.find_spec("cuda.pathfinder") is None:
        pytest.skip("cuda-python (with cuda.pathfinder) is not installed")
    cache = Path.home() / ".cache" / "edgecls" / "cuda-bindings"
    cache.mkdir(parents=True, exist_ok=True)
    pattern = f"cuda_bindings-{version}-cp{sys.version_info.major}{sys.version_info.minor}-*.whl"
    if not list(cache.glob(pattern)):
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
                str(cache),
                f"cuda-bindings=={version}",
            ],
            capture_output=True,
            timeout=300,
        )
    wheels = sorted(cache.glob(pattern))
    if not wheels:
        pytest.skip(f"cuda-bindings {version} could not be downloaded for this Python")
    zipfile.ZipFile(wheels[0]).extractall(tmp_path)
    probe = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); from cuda.bindings import runtime; "
        "missing = [n for n in json.loads(sys.argv[2]) if not hasattr(runtime, n)]; "
        "print(json.dumps({'file': runtime.__file__, 'missing': missing}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path), json.dumps(sorted(_runtime_names()))],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["file"].startswith(str(tmp_path)) and found["missing"] == []


@pytest.mark.skipif(
    importlib.util.find_spec("cuda") is None or importlib.util.find_spec("pycuda") is not None,
    reason="needs cuda-python without pycuda",
)
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
        self.current = 0

    def cudaSetDevice(self, index):
        self.current = index
        return (_Error.cudaSuccess,)

    def cudaGetDevice(self):
        return _Error.cudaSuccess, self.current

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


def test_cuda_python_gives_the_calling_thread_its_device_back_after_each_block(monkeypatch):
    """The runtime API's current device belongs to the thread: a robot's own code on GPU 0 must still be on GPU 0 after
    edgecls ran on GPU 1, also when the block raised."""
    runtime = FakeRuntime()
    monkeypatch.setattr(cuda_api.CudaPython, "_runtime", staticmethod(lambda: runtime))
    adapter = cuda_api.CudaPython(1)
    runtime.current = 0
    with adapter.active():
        assert runtime.current == 1
    assert runtime.current == 0
    with pytest.raises(ValueError), adapter.active():
        raise ValueError("inside")
    assert runtime.current == 0


class FakePycudaDriver:
    """`pycuda.driver` as its documentation (doc/driver.rst) describes the calls the adapter makes, over host memory:
    pagelocked arrays whose `base` is a PagelockedHostAllocation with free(), DeviceAllocation.free(), async copies,
    Event.record / time_till, Device.get_attribute(device_attribute.MULTIPROCESSOR_COUNT) and total_memory()."""

    class device_attribute:  # noqa: N801 (pycuda's name)
        MULTIPROCESSOR_COUNT = "MULTIPROCESSOR_COUNT"

    def __init__(self):
        self.live_device, self.live_host, self.copies = set(), set(), []

    def init(self):
        pass

    def Device(self, index):  # noqa: N802 (pycuda's name)
        driver = self

        class Device:
            @staticmethod
            def count():
                return 1

            def name(self):
                return "Orin"

            def compute_capability(self):
                return (8, 7)

            def get_attribute(self, attribute):
                assert attribute == driver.device_attribute.MULTIPROCESSOR_COUNT
                return 8

            def total_memory(self):
                return 7620 << 20

            def retain_primary_context(self):
                return type("Context", (), {"push": lambda s: None, "pop": lambda s: None})()

        return Device()

    def pagelocked_empty(self, shape, dtype):
        driver = self

        class PagelockedHostAllocation:
            def __init__(self):
                self.array = np.zeros(shape, dtype)
                self.__array_interface__ = self.array.__array_interface__
                driver.live_host.add(id(self))

            def free(self):
                driver.live_host.remove(id(self))

        return np.asarray(PagelockedHostAllocation())

    def mem_alloc(self, nbytes):
        driver = self

        class DeviceAllocation:
            def __init__(self):
                self.data = bytearray(nbytes)
                driver.live_device.add(id(self))

            def free(self):
                driver.live_device.remove(id(self))

        return DeviceAllocation()

    def memcpy_htod_async(self, dest, src, stream=None):
        dest.data[: src.nbytes] = src.tobytes()
        self.copies.append(("htod", src.nbytes, stream))

    def memcpy_dtoh_async(self, dest, src, stream=None):
        dest[...] = np.frombuffer(bytes(src.data[: dest.nbytes]), dest.dtype).reshape(dest.shape)
        self.copies.append(("dtoh", dest.nbytes, stream))

    def Stream(self):  # noqa: N802
        return type("Stream", (), {"handle": 1234, "synchronize": lambda s: None})()

    def Event(self):  # noqa: N802
        return type("Event", (), {"record": lambda s, stream=None: None, "time_till": lambda s, end: 0.25})()


def test_the_pycuda_adapter_makes_pycudas_documented_calls_and_frees_what_it_allocates(monkeypatch):
    import sys
    import types

    driver = FakePycudaDriver()
    package = types.ModuleType("pycuda")
    package.driver = driver
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)
    cuda = cuda_api.PyCuda(0)
    assert cuda.identity() == {"gpu": "Orin", "compute_capability": "8.7", "sm_count": 8, "memory_mib": 7620}
    stream, start, end = cuda.stream(), cuda.event(), cuda.event()
    host_in, host_out = cuda.pinned((2, 3), np.float32), cuda.pinned((2, 3), np.float32)
    dev = cuda.alloc(host_in.nbytes)
    host_in[...] = np.arange(6, dtype=np.float32).reshape(2, 3)
    with cuda.active():
        cuda.to_device(dev, host_in, stream)
        cuda.record(start, stream)
        cuda.to_host(host_out, dev, stream)
        cuda.record(end, stream)
        cuda.synchronize(stream)
    assert (
        np.array_equal(host_out, host_in) and cuda.stream_handle(stream) == 1234 and cuda.elapsed_ms(start, end) == 0.25
    )
    assert [c[0] for c in driver.copies] == ["htod", "dtoh"] and all(c[2] is stream for c in driver.copies)
    cuda.free(dev)
    for host in (host_in, host_out):
        cuda.free_pinned(host)
    cuda.destroy_event(start)
    cuda.destroy_stream(stream)
    assert driver.live_device == set() and driver.live_host == set()


@pytest.mark.parametrize("adapter", [cuda_api.PyCuda, cuda_api.CudaPython], ids=["pycuda", "cuda-python"])
def test_both_adapters_offer_everything_the_backend_asks_of_cuda(adapter):
    """The TensorRT backend is written against `CudaAPI`; an adapter lacking one of its calls fails on a GPU only."""
    import inspect

    wanted = {n for n, v in vars(cuda_api.CudaAPI).items() if callable(v) and not n.startswith("_")}
    assert wanted and not wanted - set(dir(adapter))
    for name in wanted:
        protocol, offered = (
            inspect.signature(getattr(cuda_api.CudaAPI, name)),
            inspect.signature(getattr(adapter, name)),
        )
        assert list(protocol.parameters)[1:] == [p for p in offered.parameters if p != "self"], name
