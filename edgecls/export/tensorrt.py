"""ONNX → TensorRT engine, written to TensorRT's current Python API and kept working on 8.6 and 10.x.

Which API is used is decided by feature checks, never by version strings:
- Q/DQ (explicit quantization) INT8 from the bundle's S8S8 graph is the default INT8 path everywhere.
- Where the builder still has precision flags (≤ 10.x), FP16/INT8 are builder flags on the FP32 graph;
  where it does not (TensorRT 11: strongly typed only), the network is created STRONGLY_TYPED and the
  precision comes from the graph itself (model.fp16.onnx, the Q/DQ graph).
- Where implicit calibration still exists (an INT8 flag and IInt8EntropyCalibrator2), `implicit=True`
  builds INT8 from the FP32 graph and the bundle's calibration cache, without recalibrating.

An engine only runs on the GPU model and TensorRT version that built it, so each engine gets a sidecar
JSON recording both plus the ONNX file's sha256; `check_engine` refuses a mismatch with a clear error.
This module needs tensorrt and pycuda but never torch.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from edgecls.errors import BackendUnavailableError, EngineMismatchError, ExportError
from edgecls.fileio import atomic_write_bytes, atomic_write_json, sha256_file

INSTALL_HINT = ("TensorRT is not installed here. On the target (Jetson: JetPack ships it; desktop: pip install "
                "'edgecls[tensorrt]' from NVIDIA's index) run: edgecls build-engine {bundle}")


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailableError(INSTALL_HINT.format(bundle="BUNDLE_DIR")) from exc
    return trt


def gpu_identity(device_index: int = 0) -> dict:
    """Name and compute capability of the GPU, via pycuda."""
    try:
        import pycuda.driver as cuda
    except ImportError as exc:
        raise BackendUnavailableError("pycuda is not installed: pip install pycuda (needs the CUDA toolkit)") from exc
    cuda.init()
    device = cuda.Device(device_index)
    major, minor = device.compute_capability()
    return {"gpu": device.name(), "compute_capability": f"{major}.{minor}"}


def engine_identity(trt, onnx_path: Path, precision: str, device_index: int = 0) -> dict:
    return {"tensorrt": trt.__version__, **gpu_identity(device_index), "onnx_sha256": sha256_file(onnx_path),
            "precision": precision}


def sidecar_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".json")


def check_engine(engine_path: Path, expected: dict) -> None:
    """Raise EngineMismatchError unless the engine's sidecar matches this GPU, TensorRT and ONNX file."""
    sidecar = sidecar_path(engine_path)
    if not sidecar.is_file():
        raise EngineMismatchError(f"{engine_path} has no sidecar {sidecar.name}; rebuild it with `edgecls build-engine`")
    recorded = json.loads(sidecar.read_text())
    for key in ("gpu", "compute_capability", "tensorrt", "onnx_sha256", "precision"):
        if recorded.get(key) != expected.get(key):
            raise EngineMismatchError(
                f"{engine_path} was built for {key}={recorded.get(key)!r} but this machine has {expected.get(key)!r}. "
                "TensorRT engines run only where they were built: rebuild with `edgecls build-engine BUNDLE` here.")
    if recorded.get("engine_sha256") != sha256_file(engine_path):
        raise EngineMismatchError(f"{engine_path} does not match the hash in its sidecar (truncated or edited); rebuild it")


class _CacheCalibrator:
    """Implicit-calibration shim: hands TensorRT a ready calibration cache, so no batches are ever needed."""

    def __new__(cls, trt, cache: bytes):
        class Calibrator(trt.IInt8EntropyCalibrator2):
            def __init__(self):
                super().__init__()

            def get_batch_size(self):
                return 1

            def get_batch(self, names):
                return None

            def read_calibration_cache(self):
                return cache

            def write_calibration_cache(self, data):
                return None

        return Calibrator()


def tensorrt_cache_header(trt) -> str:
    """The first line TensorRT expects in a calibration cache made for the installed version."""
    major, minor, patch = (int(p) for p in trt.__version__.split(".")[:3])
    version = major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch
    return f"TRT-{version}-EntropyCalibration2"


def build_plan(trt, precision: str) -> dict:
    """What this TensorRT needs for an engine of `precision`, decided by feature checks on the module alone:
    network creation flags, builder flags, and the mode the sidecar records."""
    creation = trt.NetworkDefinitionCreationFlag
    has_precision_flags = hasattr(trt.BuilderFlag, "FP16")
    creation_flags = ["EXPLICIT_BATCH"] if hasattr(creation, "EXPLICIT_BATCH") else []  # required on 8.x, gone in 11
    if not has_precision_flags:
        return {"creation_flags": [*creation_flags, "STRONGLY_TYPED"], "builder_flags": [], "mode": "strongly-typed"}
    builder_flags = {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}[precision]
    return {"creation_flags": creation_flags, "builder_flags": builder_flags,
            "mode": "explicit-qdq" if precision == "int8" else "weakly-typed"}


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, precision: str, *,
                 calibration_cache: str | os.PathLike | None = None, max_batch: int = 64, opt_batch: int = 1,
                 workspace_mib: int = 1024, device_index: int = 0) -> dict:
    """Build and save an engine plus its sidecar; returns the sidecar's contents.

    `onnx_path` is the graph whose precision the engine should have: model.onnx (FP32, or FP16/INT8
    via builder flags), model.fp16.onnx (strongly typed FP16), model.int8.trt.onnx (Q/DQ INT8).
    `calibration_cache` asks for implicit INT8 from an FP32 graph, where the TensorRT version allows it.
    """
    trt = import_tensorrt()
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    plan = build_plan(trt, precision)
    flags = 0
    for name in plan["creation_flags"]:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    mode = plan["mode"]
    for name in plan["builder_flags"]:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if calibration_cache is not None:
        if "INT8" not in plan["builder_flags"] or not hasattr(trt, "IInt8EntropyCalibrator2"):
            raise ExportError("implicit INT8 calibration needs precision int8 and a TensorRT that still has it (≤ 10.x); "
                              "build INT8 from the bundle's Q/DQ graph (model.int8.trt.onnx) instead")
        lines = Path(calibration_cache).read_text().splitlines()
        cache = "\n".join([tensorrt_cache_header(trt), *lines[1:]]).encode() + b"\n"
        config.int8_calibrator = _CacheCalibrator(trt, cache)
        mode = "implicit-calibration-cache"

    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        chw = tuple(tensor.shape)[1:]
        profile.set_shape(tensor.name, (1, *chw), (opt_batch, *chw), (max_batch, *chw))
    config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build a {precision} engine from {onnx_path}; see the log above")
    atomic_write_bytes(engine_path, bytes(serialized))
    identity = {**engine_identity(trt, onnx_path, precision, device_index), "mode": mode, "max_batch": max_batch,
                "onnx": onnx_path.name, "engine_sha256": sha256_file(engine_path)}
    atomic_write_json(sidecar_path(engine_path), identity)
    return identity


def engine_sources(bundle, precision: str, has_precision_flags: bool):
    """Which bundle file an engine of `precision` is built from, given the TensorRT's capabilities."""
    if precision == "int8":
        return bundle.find("onnx", "int8", "tensorrt")
    if precision == "fp16" and not has_precision_flags:
        return bundle.find("onnx", "fp16")
    return bundle.find("onnx", "fp32")


def build_bundle_engines(bundle_dir: str | os.PathLike, precisions: tuple[str, ...] = ("fp16", "int8"),
                         out_dir: str | os.PathLike | None = None, **kwargs) -> list[dict]:
    """`edgecls build-engine BUNDLE`: one engine per precision, next to the bundle (or in `out_dir`)."""
    from edgecls.bundle import Bundle

    trt = import_tensorrt()
    bundle = Bundle.open(bundle_dir)
    out = Path(out_dir or bundle.root)
    built = []
    for precision in precisions:
        entry = engine_sources(bundle, precision, hasattr(trt.BuilderFlag, "FP16"))
        if entry is None:
            raise ExportError(f"bundle has no ONNX file to build a {precision} engine from; export with --{precision}")
        built.append(build_engine(bundle.verified_path(entry), out / f"model.{precision}.engine", precision, **kwargs))
    return built
