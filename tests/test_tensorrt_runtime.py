"""The TensorRT backend's host-side logic, run here with stand-ins for the engine context and the CUDA adapter.

The real engine path runs in tests/test_tensorrt.py where a GPU exists; these check what can go wrong
between edgecls and TensorRT's API: batches above the engine's profile, and refused shapes or addresses.
"""

import threading
from contextlib import contextmanager

import numpy as np
import pytest

from edgecls.errors import EngineMismatchError
from edgecls.runtime.backends import choose
from edgecls.runtime.backends.tensorrt import TensorRTBackend


class FakeContext:
    """Doubles each input row's sum into a 10-wide `logits` output and its channels' means into a 3-wide `features`
    one; refuses batches above `max_batch` as TensorRT does."""

    def __init__(self, max_batch: int, refuse_address: bool = False):
        self.max_batch, self.refuse_address = max_batch, refuse_address
        self.batch, self.addresses, self.shapes = 0, {}, []

    def set_input_shape(self, name, shape):
        self.shapes.append(tuple(shape))
        if not 1 <= shape[0] <= self.max_batch:
            return False
        self.batch = shape[0]
        return True

    def get_tensor_shape(self, name):
        return (self.batch, 10 if name == "logits" else 3)

    def set_tensor_address(self, name, address):
        self.addresses[name] = address
        return not self.refuse_address

    def execute_async_v3(self, stream):
        memory = FakeCuda.memory
        x = memory[self.addresses["input"]]
        memory[self.addresses["logits"]] = np.repeat(2 * x.reshape(len(x), -1).sum(1, keepdims=True), 10, axis=1)
        memory[self.addresses["features"]] = x.mean((2, 3))
        return True


class FakeCuda:
    """The `cuda_api` adapter's surface over a dict of 'device' buffers."""

    name = "fake"
    memory: dict = {}

    @contextmanager
    def active(self):
        yield

    def pinned(self, shape, dtype):
        return np.empty(shape, dtype)

    def alloc(self, nbytes):
        key = max(self.memory, default=0) + 1
        self.memory[key] = None
        return key

    def to_device(self, dev, host, stream):
        self.memory[dev] = host.copy()

    def to_host(self, host, dev, stream):
        np.copyto(host, self.memory[dev])

    def stream_handle(self, stream):
        return 0

    def record(self, event, stream):
        pass

    def synchronize(self, stream):
        pass

    def elapsed_ms(self, start, end):
        return 0.1

    def free(self, dev):
        del self.memory[dev]

    def free_pinned(self, host):
        self.freed_pinned.append(host.shape)

    def destroy_stream(self, stream):
        self.destroyed.append("stream")

    def destroy_event(self, event):
        self.destroyed.append("event")

    def __init__(self):
        FakeCuda.memory = {}
        self.freed_pinned, self.destroyed = [], []


def _backend(max_batch: int, refuse_address: bool = False) -> TensorRTBackend:
    backend = TensorRTBackend.__new__(TensorRTBackend)
    backend.input_shape = (3, 2, 2)
    backend.cuda, backend.context, backend.engine = FakeCuda(), FakeContext(max_batch, refuse_address), None
    backend.stream = backend.start = backend.end = None
    backend.input_name, backend.output_names, backend.has_features = "input", ["logits", "features"], True
    backend.input_dtype, backend.output_dtypes = np.float32, {"logits": np.float32, "features": np.float32}
    backend.buffers, backend.capacity, backend.closed = None, 0, False
    backend.lock, backend.max_batch = threading.Lock(), max_batch
    return backend


def test_batches_above_the_engine_profile_are_split():
    backend = _backend(max_batch=64)
    batch = np.random.default_rng(0).standard_normal((150, 3, 2, 2)).astype(np.float32)
    out, features = backend._infer(batch)
    assert out.shape == (150, 10) and features.shape == (150, 3)
    assert np.allclose(out[:, 0], 2 * batch.reshape(150, -1).sum(1), atol=1e-5)
    assert np.allclose(features, batch.mean((2, 3)), atol=1e-6)
    assert max(shape[0] for shape in backend.context.shapes) == 64


def test_refused_shapes_and_addresses_raise_instead_of_running():
    backend = _backend(max_batch=64)
    backend.max_batch = 128  # a sidecar that claims more than the engine's profile holds
    with pytest.raises(EngineMismatchError, match="refused input shape"):
        backend._infer(np.zeros((100, 3, 2, 2), np.float32))
    with pytest.raises(EngineMismatchError, match="device address"):
        _backend(max_batch=8, refuse_address=True)._infer(np.zeros((2, 3, 2, 2), np.float32))


def test_auto_picks_tensorrt_only_with_a_cuda_device(bundle_dir, monkeypatch):
    from edgecls.bundle import Bundle
    from edgecls.runtime import backends

    monkeypatch.setattr(backends, "tensorrt_installed", lambda: True)
    monkeypatch.setattr(backends, "installed_cuda_api", lambda: "cuda-python")
    monkeypatch.setattr(
        backends, "cuda_device_count", lambda: (0, "RuntimeError: cuInit failed: no CUDA-capable device")
    )
    name, _, device, why = choose(Bundle.open(bundle_dir))
    assert (name, device) == ("onnxruntime", "cpu") and "no CUDA device is usable" in why and "cuInit" in why
    monkeypatch.setattr(backends, "cuda_device_count", lambda: (1, ""))
    assert choose(Bundle.open(bundle_dir), precision="fp16")[0] == "tensorrt"


def test_tensorrt_stubs_alone_do_not_count_as_tensorrt(tmp_path, monkeypatch):
    """`tensorrt-stubs` installs a tensorrt/ folder of .pyi files, which imports as an empty namespace package."""
    import importlib
    import sys

    from edgecls.runtime.engines import tensorrt_installed

    (tmp_path / "tensorrt").mkdir()
    (tmp_path / "tensorrt" / "__init__.pyi").write_text("def __getattr__(name): ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "tensorrt", raising=False)
    assert not tensorrt_installed()
    (tmp_path / "tensorrt" / "__init__.py").write_text("__version__ = '10.3.0'\n")
    importlib.invalidate_caches()
    assert tensorrt_installed()


def test_one_buffer_set_grows_with_the_largest_batch_and_close_frees_everything():
    """Batch sizes 1, 7, 3, 64, 2: device memory holds one input and one buffer per output at every moment, sized for
    the largest batch so far; answers stay right for the smaller batches that reuse it; close() returns it all."""
    backend = _backend(max_batch=64)
    rng = np.random.default_rng(1)
    for n in (1, 7, 3, 64, 2):
        batch = rng.standard_normal((n, 3, 2, 2)).astype(np.float32)
        logits, features = backend._infer(batch)
        assert np.allclose(logits[:, 0], 2 * batch.reshape(n, -1).sum(1), atol=1e-5)
        assert np.allclose(features, batch.mean((2, 3)), atol=1e-6)
        assert len(FakeCuda.memory) == 3
    assert backend.capacity == 64
    assert backend.cuda.freed_pinned == [(1, 3, 2, 2), (1, 10), (1, 3), (7, 3, 2, 2), (7, 10), (7, 3)]
    backend.close()
    assert FakeCuda.memory == {} and sorted(backend.cuda.destroyed) == ["event", "event", "stream"]
    backend.close()  # twice is harmless
    with pytest.raises(RuntimeError, match="was closed"):
        backend._infer(np.zeros((1, 3, 2, 2), np.float32))


def test_a_planted_engine_in_a_signed_bundle_is_named_by_info_and_never_loaded(bundle_dir, tmp_path, monkeypatch):
    """Someone who can write to the bundle directory drops model.fp16.engine and a sidecar that matches this GPU: `info
    --public-key` names it as uncovered, and the backend builds (and runs) its own engine in the cache instead."""
    import hashlib
    import json
    import shutil

    from typer.testing import CliRunner

    from edgecls.bundle import Bundle, sign_bundle
    from edgecls.cli import app
    from edgecls.runtime.backends import tensorrt as trt_backend
    from edgecls.runtime.engines import sidecar_path
    from edgecls.signing import generate_key

    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    bundle = tmp_path / "signed"
    shutil.copytree(bundle_dir, bundle)
    private, public = generate_key(tmp_path / "fleet.key")
    sign_bundle(bundle, private)
    expected = {
        "gpu": "Orin (NVIDIA Jetson Orin Nano)",
        "compute_capability": "8.7",
        "sm_count": 8,
        "memory_mib": 7620,
        "tensorrt": "10.3.0",
        "onnx_sha256": "cd",
        "precision": "fp16",
    }
    planted = bundle / "model.fp16.engine"
    planted.write_bytes(b"attacker's engine")
    sidecar_path(planted).write_text(
        json.dumps({**expected, "max_batch": 64, "engine_sha256": hashlib.sha256(b"attacker's engine").hexdigest()})
    )

    result = CliRunner().invoke(app, ["info", str(bundle), "--public-key", str(public)])
    assert result.exit_code == 0, result.output
    assert "never loaded: model.fp16.engine, model.fp16.engine.json" in " ".join(result.output.split())

    def fake_build(onnx, onnx_name, engine_path, precision, **kwargs):
        engine_path.parent.mkdir(parents=True, exist_ok=True)
        engine_path.write_bytes(b"our engine")
        sidecar_path(engine_path).write_text(
            json.dumps({**expected, "max_batch": 64, "engine_sha256": hashlib.sha256(b"our engine").hexdigest()})
        )

    monkeypatch.setattr(trt_backend, "build_engine", fake_build)
    backend = trt_backend.TensorRTBackend.__new__(trt_backend.TensorRTBackend)
    backend.bundle, backend.precision, backend.device_index = Bundle.open(bundle, public_key=public), "fp16", 0
    with pytest.warns(UserWarning, match="does not list it, so its signature does not cover it"):
        path, data, sidecar = backend._find_or_build(b"onnx", "model.onnx", expected)
    assert data == b"our engine" and path.parent == tmp_path / "cache" / "engines" and sidecar["max_batch"] == 64
    planted.unlink()
    path.write_bytes(b"our engine, corrupted")  # a damaged cache entry is rebuilt, not trusted and not fatal
    with pytest.warns(UserWarning, match="rebuilding the cached engine"):
        assert backend._find_or_build(b"onnx", "model.onnx", expected)[1] == b"our engine"


def test_an_engine_the_manifest_lists_is_checked_against_its_entry_not_its_sidecar(bundle_dir, tmp_path, monkeypatch):
    import hashlib
    import json
    import shutil

    from edgecls.bundle import MANIFEST, Bundle, seal
    from edgecls.runtime.backends import tensorrt as trt_backend
    from edgecls.runtime.engines import sidecar_path

    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    bundle = tmp_path / "b"
    shutil.copytree(bundle_dir, bundle)
    expected = {
        "gpu": "NVIDIA RTX A2000",
        "compute_capability": "8.6",
        "sm_count": 26,
        "memory_mib": 5920,
        "tensorrt": "10.13.3",
        "onnx_sha256": "ef",
        "precision": "fp16",
    }
    (bundle / "model.fp16.engine").write_bytes(b"exported engine")
    entry = {
        **expected,
        "file": "model.fp16.engine",
        "max_batch": 32,
        "engine_sha256": hashlib.sha256(b"exported engine").hexdigest(),
    }
    manifest = json.loads((bundle / MANIFEST).read_text())
    (bundle / MANIFEST).write_text(json.dumps(seal({**manifest, "engines": [entry]})))
    sidecar_path(bundle / "model.fp16.engine").write_text('{"max_batch": 4096, "gpu": "forged"}')
    monkeypatch.setattr(trt_backend, "build_engine", lambda *a, **k: pytest.fail("a listed engine must not be rebuilt"))
    backend = trt_backend.TensorRTBackend.__new__(trt_backend.TensorRTBackend)
    backend.bundle, backend.precision, backend.device_index = Bundle.open(bundle), "fp16", 0
    path, data, record = backend._find_or_build(b"onnx", "model.onnx", expected)
    assert path == bundle / "model.fp16.engine" and data == b"exported engine" and record["max_batch"] == 32
    assert "model.fp16.engine" not in Bundle.open(bundle).uncovered()
    assert "model.fp16.engine.json" in Bundle.open(bundle).uncovered()


def test_a_container_that_masks_the_device_tree_finds_the_same_cached_engine(tmp_path, monkeypatch):
    """Inside a container /proc/device-tree is masked: the engine's key must not change with it (SM count and memory
    tell Orin modules apart), or every container start rebuilds every engine."""
    import types

    from edgecls.runtime import engines
    from edgecls.runtime.backends import cuda_api

    orin = {"gpu": "Orin", "compute_capability": "8.7", "sm_count": 8, "memory_mib": 7620}
    monkeypatch.setattr(cuda_api, "open_cuda", lambda index=0: types.SimpleNamespace(identity=lambda: dict(orin)))
    monkeypatch.setenv("EDGECLS_CACHE", str(tmp_path / "cache"))
    trt = types.SimpleNamespace(__version__="10.3.0")
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson Orin Nano Developer Kit\0")
    monkeypatch.setattr(engines, "JETSON_MODEL", model)
    on_host = engines.engine_identity(trt, "ab" * 32, "fp16")
    monkeypatch.setattr(engines, "JETSON_MODEL", tmp_path / "masked")
    in_container = engines.engine_identity(trt, "ab" * 32, "fp16")
    assert on_host["module"] == "NVIDIA Jetson Orin Nano Developer Kit" and "module" not in in_container
    assert engines.cached_engine_path(on_host) == engines.cached_engine_path(in_container)
