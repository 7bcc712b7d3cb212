"""ONNX → TensorRT engine, written to TensorRT's current Python API and kept working on 8.6, 10.x and 11.x.

Which API is used is decided by feature checks, never by version strings (`build_plan`):
- INT8 is always explicit: the bundle's Q/DQ graph made by NVIDIA ModelOpt (INT8 where it placed Q/DQ,
  FP16 elsewhere). Where networks can be STRONGLY_TYPED (10.x, 11.x) it is built so, and TensorRT takes
  every precision from the graph; 8.6 builds it weakly typed with the INT8 and FP16 flags.
- FP16 is the FP16 builder flag on the FP32 graph where that flag exists (≤ 10.x), else (11.x, strongly
  typed only) the bundle's FP16 graph.
- Implicit INT8 calibration (calibrators, calibration caches) is not used: deprecated since 10.1, gone in 11.
- A timing cache per TensorRT version and GPU makes rebuilds after the first take seconds, not minutes.

An engine only runs on the GPU model and TensorRT version that built it, so each engine gets a sidecar
JSON recording both plus the ONNX file's sha256; `check_engine` refuses a mismatch with a clear error.
This module needs tensorrt and pycuda or cuda-python, never torch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from pathlib import Path

from edgecls.errors import BackendUnavailableError, EngineMismatchError, ExportError
from edgecls.fileio import atomic_write_bytes, atomic_write_json, cache_dir, sha256_file

INSTALL_HINT = ("TensorRT is not installed here. On a Jetson it comes with JetPack (python3-libnvinfer); on a desktop "
                "GPU: pip install 'edgecls[tensorrt-cu12]' or 'edgecls[tensorrt-cu13]' (match the driver's CUDA). "
                "Then run: edgecls build-engine {bundle}")


def tensorrt_installed() -> bool:
    """A real TensorRT, not the `tensorrt/` folder of .pyi files that `tensorrt-stubs` installs: that one imports
    as an empty namespace package, so `find_spec` alone would report TensorRT where there is none."""
    spec = importlib.util.find_spec("tensorrt")
    return spec is not None and spec.origin is not None


def require_tensorrt() -> None:
    """Raise with the install hint where TensorRT is missing. Callers then `import tensorrt as trt` themselves,
    so the type checker reads every call against `tensorrt-stubs`."""
    if not tensorrt_installed():
        raise BackendUnavailableError(INSTALL_HINT.format(bundle="BUNDLE_DIR"))


def gpu_identity(device_index: int = 0) -> dict:
    """Name and compute capability of the GPU, through pycuda or cuda-python."""
    from edgecls.runtime.backends.cuda_api import open_cuda

    return open_cuda(device_index).identity()


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


def build_plan(trt, precision: str) -> dict:
    """What this TensorRT needs for an engine of `precision`, decided by feature checks on the module alone:
    network creation flags, builder flags, and the mode the sidecar records."""
    creation = trt.NetworkDefinitionCreationFlag
    explicit_batch = ["EXPLICIT_BATCH"] if hasattr(creation, "EXPLICIT_BATCH") else []  # required on 8.x, gone in 11
    strongly_typed = hasattr(creation, "STRONGLY_TYPED")
    has_precision_flags = hasattr(trt.BuilderFlag, "FP16")
    if strongly_typed and (precision == "int8" or not has_precision_flags):
        return {"creation_flags": [*explicit_batch, "STRONGLY_TYPED"], "builder_flags": [], "mode": "strongly-typed"}
    if precision == "int8":
        return {"creation_flags": explicit_batch, "builder_flags": ["FP16", "INT8"], "mode": "explicit-qdq-weakly-typed"}
    return {"creation_flags": explicit_batch, "builder_flags": ["FP16"] if precision == "fp16" else [], "mode": "weakly-typed"}


def timing_cache_path(identity: dict) -> Path:
    """One timing cache per TensorRT version and GPU model, under $EDGECLS_CACHE/timing (default ~/.cache/edgecls)."""
    gpu = "".join(c if c.isalnum() else "-" for c in identity["gpu"])
    return cache_dir("timing") / f"trt-{identity['tensorrt']}-{gpu}-sm{identity['compute_capability']}.cache"


def _attach_timing_cache(config, path: Path):
    cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
    if not config.set_timing_cache(cache, False):
        warnings.warn(f"TensorRT rejected the timing cache {path}; building without it (it will be rewritten)", stacklevel=3)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, precision: str, *,
                 max_batch: int = 64, opt_batch: int = 1, workspace_mib: int = 1024, device_index: int = 0) -> dict:
    """Build and save an engine plus its sidecar; returns the sidecar's contents.

    `onnx_path` is the graph whose precision the engine should have (`engine_sources` picks it): model.onnx
    (FP32, or FP16 by builder flag), model.fp16.onnx (strongly typed FP16), model.int8.trt.onnx (Q/DQ INT8).
    """
    require_tensorrt()
    import tensorrt as trt

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    identity = engine_identity(trt, onnx_path, precision, device_index)
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
    for name in plan["builder_flags"]:
        config.set_flag(getattr(trt.BuilderFlag, name))
    timing_path = timing_cache_path(identity)
    timing_cache = _attach_timing_cache(config, timing_path)

    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        chw = tuple(tensor.shape)[1:]  # type: ignore[var-annotated,arg-type]  # Dims iterates; the stubs omit __iter__
        profile.set_shape(tensor.name, (1, *chw), (opt_batch, *chw), (max_batch, *chw))  # type: ignore[arg-type]  # tuple → Dims
    config.add_optimization_profile(profile)

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build a {precision} engine from {onnx_path}; see the log above")
    atomic_write_bytes(engine_path, bytes(serialized))
    atomic_write_bytes(timing_path, bytes(timing_cache.serialize()))
    identity.update(mode=plan["mode"], max_batch=max_batch, onnx=onnx_path.name, engine_sha256=sha256_file(engine_path),
                    timing_cache=str(timing_path))
    atomic_write_json(sidecar_path(engine_path), identity)
    return identity


def engine_sources(bundle, precision: str, has_precision_flags: bool):
    """Which bundle file an engine of `precision` is built from, given the TensorRT's capabilities."""
    if precision == "int8":
        return bundle.find("onnx", "int8", "tensorrt", "modelopt")
    if precision == "fp16" and not has_precision_flags:
        return bundle.find("onnx", "fp16")
    return bundle.find("onnx", "fp32")


def build_bundle_engines(bundle_dir: str | os.PathLike, precisions: tuple[str, ...] = ("fp16", "int8"),
                         out_dir: str | os.PathLike | None = None, **kwargs) -> list[dict]:
    """`edgecls build-engine BUNDLE`: one engine per precision, next to the bundle (or in `out_dir`)."""
    from edgecls.bundle import Bundle

    require_tensorrt()
    import tensorrt as trt

    bundle = Bundle.open(bundle_dir)
    out = Path(out_dir or bundle.root)
    built = []
    for precision in precisions:
        entry = engine_sources(bundle, precision, hasattr(trt.BuilderFlag, "FP16"))
        if entry is None:
            raise ExportError(f"bundle has no ONNX file to build a {precision} engine from; export with --{precision}")
        built.append(build_engine(bundle.verified_path(entry), out / f"model.{precision}.engine", precision, **kwargs))
    return built
