"""ONNX → TensorRT engine, written to TensorRT's current Python API and kept working on 8.6, 10.x and 11.x.

Which API is used is decided by feature checks, never by version strings (`build_plan`):
- INT8 is always explicit: the bundle's Q/DQ graph made by NVIDIA ModelOpt (INT8 where it placed Q/DQ,
  FP16 elsewhere). Where networks can be STRONGLY_TYPED (10.x, 11.x) it is built so, and TensorRT takes
  every precision from the graph; 8.6 builds it weakly typed with the INT8 and FP16 flags.
- FP16 is the FP16 builder flag on the FP32 graph where TensorRT still takes precisions from flags (8.6, 10.0-10.11),
  else the bundle's FP16 graph, strongly typed: 10.12 deprecated the flag ("superseded by strong typing", in the
  module's own documentation of `BuilderFlag.FP16`) and 11.x removed it.
- Implicit INT8 calibration (calibrators, calibration caches) is not used: deprecated since 10.1, gone in 11.
- A timing cache per TensorRT version and GPU makes rebuilds after the first take seconds, not minutes.

An engine only runs on the GPU model and TensorRT version that built it, so each engine gets a sidecar
JSON recording both plus the ONNX file's sha256; `check_engine` refuses a mismatch with a clear error. The GPU
is named by model, compute capability, SM count and memory: every Jetson Orin module reports the same name
("Orin") and sm_87, and an engine tuned on a 16-SM AGX Orin is not one for a 4-SM Orin Nano.
FP32 engines are built with TF32 off (TensorRT enables it by default on Ampere and later, about 6.5e-3 from FP32
on logits), so an FP32 engine answers as model.onnx does; the sidecar records it.

Engines live in the local cache ($EDGECLS_CACHE/engines), keyed by GPU, TensorRT, precision and the sha256 of
the (signed) ONNX file they were built from. A bundle directory is not trusted for engines: the runtime loads
one from there only if the sealed manifest lists its sha256, so a planted engine with a forged sidecar is never
run and `edgecls sign` covers everything that runs.
This module needs tensorrt and pycuda or cuda-python, never torch.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from edgecls.errors import BackendUnavailableError, EngineMismatchError, ExportError
from edgecls.fileio import atomic_write_bytes, atomic_write_json, cache_dir, sha256_file

if TYPE_CHECKING:
    import tensorrt as trt

IDENTITY_KEYS = ("gpu", "compute_capability", "sm_count", "memory_mib", "tensorrt", "onnx_sha256", "precision")

INSTALL_HINT = (
    "TensorRT is not installed here. On a Jetson it comes with JetPack (python3-libnvinfer); on a desktop "
    "GPU: pip install 'edgecls[tensorrt-cu12]' or 'edgecls[tensorrt-cu13]' (match the driver's CUDA). "
    "Then run: edgecls build-engine {bundle}"
)


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


JETSON_MODEL = Path("/proc/device-tree/model")


def gpu_identity(device_index: int = 0) -> dict:
    """Name, compute capability, SM count and memory of the GPU (through pycuda or cuda-python): what keys an engine.
    Every Orin's GPU calls itself "Orin" at sm_87; the SM count and memory tell the modules apart (AGX 16 SMs, Orin
    Nano 4 or 8). On a Jetson the module's model from the device tree is recorded too (`module`), but does not key
    the engine: a container masks /proc/device-tree, and the engine built outside (or in the last container) would
    no longer match."""
    from edgecls.runtime.backends.cuda_api import open_cuda

    identity = open_cuda(device_index).identity()
    if JETSON_MODEL.is_file():
        identity["module"] = JETSON_MODEL.read_bytes().rstrip(bytes(1)).decode(errors="replace").strip()
    return identity


def engine_identity(trt, onnx_sha256: str, precision: str, device_index: int = 0) -> dict:
    return {
        "tensorrt": trt.__version__,
        **gpu_identity(device_index),
        "onnx_sha256": onnx_sha256,
        "precision": precision,
    }


def sidecar_path(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".json")


def cached_engine_path(identity: dict) -> Path:
    """The local cache's engine for this GPU, TensorRT, precision and ONNX file."""
    key = hashlib.sha256("|".join(str(identity.get(k)) for k in IDENTITY_KEYS).encode()).hexdigest()[:24]
    return cache_dir("engines") / f"{key}.engine"


def read_sidecar(engine_path: Path) -> dict:
    sidecar = sidecar_path(engine_path)
    if not sidecar.is_file():
        raise EngineMismatchError(
            f"{engine_path} has no sidecar {sidecar.name}; rebuild it with `edgecls build-engine`"
        )
    try:
        recorded = json.loads(sidecar.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EngineMismatchError(
            f"{sidecar} is not valid JSON ({exc}); rebuild the engine with `edgecls build-engine`"
        ) from exc
    if not isinstance(recorded, dict):
        raise EngineMismatchError(f"{sidecar} is not a JSON object; rebuild the engine with `edgecls build-engine`")
    return recorded


def check_engine(engine_path: Path, expected: dict, data: bytes, recorded: dict | None = None) -> dict:
    """The engine's record (its sidecar, or `recorded`: the manifest's entry for an engine in a bundle), if it matches
    this GPU, TensorRT and ONNX file and `data` (the engine's bytes, read once: what is checked is what is
    deserialized); else EngineMismatchError."""
    recorded = read_sidecar(engine_path) if recorded is None else recorded
    for key in IDENTITY_KEYS:
        if recorded.get(key) != expected.get(key):
            raise EngineMismatchError(
                f"{engine_path} was built for {key}={recorded.get(key)!r} but this machine has {expected.get(key)!r}. "
                "TensorRT engines run only where they were built: rebuild with `edgecls build-engine BUNDLE` here."
            )
    if recorded.get("engine_sha256") != hashlib.sha256(data).hexdigest():
        raise EngineMismatchError(
            f"{engine_path} does not match the hash in its sidecar (truncated or edited); rebuild it"
        )
    return recorded


def weak_typing(trt) -> bool:
    """Whether this TensorRT takes layer precisions from builder flags: 8.6 and 10.0-10.11. From 10.12 the module's
    own documentation of `BuilderFlag.FP16` marks it "[DEPRECATED] ... Superseded by strong typing"; 11.x has no
    such flag. A feature check on the module, as everything here: JetPack and PyPI builds carry the same docs."""
    if not hasattr(trt.BuilderFlag, "FP16"):
        return False
    if not hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        return True
    member = re.search(r"^\s*FP16 :(.*?)(?=^\s*\w+ :|\Z)", trt.BuilderFlag.__doc__ or "", re.M | re.S)
    return not (member and "DEPRECATED" in member.group(1))


def build_plan(trt, precision: str) -> dict:
    """What this TensorRT needs for an engine of `precision`, decided by feature checks on the module alone:
    network creation flags, builder flags, and the mode the sidecar records."""
    creation = trt.NetworkDefinitionCreationFlag
    explicit_batch = ["EXPLICIT_BATCH"] if hasattr(creation, "EXPLICIT_BATCH") else []  # required on 8.x, gone in 11
    strongly_typed = hasattr(creation, "STRONGLY_TYPED")
    if strongly_typed and (precision == "int8" or not weak_typing(trt)):
        return {"creation_flags": [*explicit_batch, "STRONGLY_TYPED"], "builder_flags": [], "mode": "strongly-typed"}
    if precision == "int8":
        return {
            "creation_flags": explicit_batch,
            "builder_flags": ["FP16", "INT8"],
            "mode": "explicit-qdq-weakly-typed",
        }
    return {
        "creation_flags": explicit_batch,
        "builder_flags": ["FP16"] if precision == "fp16" else [],
        "mode": "weakly-typed",
    }


def timing_cache_path(identity: dict) -> Path:
    """One timing cache per TensorRT version and GPU model, under $EDGECLS_CACHE/timing (default ~/.cache/edgecls)."""
    gpu = "".join(c if c.isalnum() else "-" for c in identity["gpu"])
    return cache_dir("timing") / f"trt-{identity['tensorrt']}-{gpu}-sm{identity['compute_capability']}.cache"


def _attach_timing_cache(config: trt.IBuilderConfig, path: Path) -> tuple[trt.ITimingCache, bool]:
    """The timing cache from `path` and whether it held earlier timings; a corrupt or foreign one (TensorRT raises, or
    refuses it) is replaced by an empty one and rewritten after the build."""
    known = path.read_bytes() if path.is_file() else b""
    try:
        cache = config.create_timing_cache(known)
        accepted = cache is not None and config.set_timing_cache(cache, False)
    except Exception as exc:  # TensorRT raises its own error types for bytes it cannot read
        warnings.warn(f"TensorRT could not read the timing cache {path} ({exc})", stacklevel=3)
        accepted = False
    if not accepted:
        warnings.warn(f"building without the timing cache {path}; it will be rewritten", stacklevel=3)
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, False)
    return cache, bool(known) and accepted


def build_engine(
    onnx: bytes,
    onnx_name: str,
    engine_path: str | os.PathLike,
    precision: str,
    *,
    max_batch: int = 64,
    opt_batch: int = 1,
    workspace_mib: int = 1024,
    device_index: int = 0,
) -> dict:
    """Build and save an engine plus its sidecar; returns the sidecar's contents.

    `onnx` holds the bytes (as verified against the manifest) of the graph whose precision the engine should have
    (`engine_sources` picks it): model.onnx (FP32, or FP16 by builder flag), model.fp16.onnx (strongly typed FP16),
    model.int8.trt.onnx (Q/DQ INT8).
    """
    require_tensorrt()
    import tensorrt as trt

    engine_path = Path(engine_path)
    identity = engine_identity(trt, hashlib.sha256(onnx).hexdigest(), precision, device_index)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    plan = build_plan(trt, precision)
    flags = 0
    for name in plan["creation_flags"]:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_name}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    for name in plan["builder_flags"]:
        config.set_flag(getattr(trt.BuilderFlag, name))
    tf32 = None
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
        tf32 = False
    timing_path = timing_cache_path(identity)
    timing_cache, timings_reused = _attach_timing_cache(config, timing_path)

    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        chw = tuple(tensor.shape)[1:]  # type: ignore[var-annotated,arg-type]  # Dims iterates; the stubs omit __iter__
        profile.set_shape(tensor.name, (1, *chw), (opt_batch, *chw), (max_batch, *chw))  # type: ignore[arg-type]  # tuple → Dims
    if config.add_optimization_profile(profile) < 0:
        raise ExportError(
            f"TensorRT refused the optimization profile batch 1..{max_batch} (opt {opt_batch}) for {onnx_name}"
        )

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build a {precision} engine from {onnx_name}; see the log above")
    atomic_write_bytes(engine_path, bytes(serialized))
    atomic_write_bytes(timing_path, bytes(timing_cache.serialize()))
    identity.update(
        mode=plan["mode"],
        max_batch=max_batch,
        onnx=onnx_name,
        engine_sha256=sha256_file(engine_path),
        timing_cache=str(timing_path),
        timing_cache_reused=timings_reused,
        tf32=tf32,
    )
    atomic_write_json(sidecar_path(engine_path), identity)
    return identity


TENSORRT_8_INT8 = (
    "TensorRT {version} (JetPack 6.0 ships 8.6) cannot parse model.int8.trt.onnx (ModelOpt's opset 19 with FP16 "
    "scales) and the bundle has no --tensorrt8 graph: re-export with --tensorrt8 for the graph it can build, use an "
    "FP16 engine, or move to TensorRT 10.3 (JetPack 6.1 or 6.2)"
)


def engine_sources(bundle, precision: str, weakly_typed: bool, strongly_typed: bool = True, version: str = "8.x"):
    """Which bundle file an engine of `precision` is built from, given the TensorRT's capabilities (`weak_typing`,
    STRONGLY_TYPED). A TensorRT without strongly typed networks (8.6) cannot parse the default ModelOpt graph (opset
    19, FP16 scales): it takes the `--tensorrt8` graph, and without one the INT8 engine is refused with the fix."""
    if precision == "int8" and not strongly_typed:
        entry = bundle.find("onnx", "int8", "tensorrt", "modelopt-fp32-opset17")
        if entry is None and bundle.find("onnx", "int8", "tensorrt", "modelopt") is not None:
            raise ExportError(TENSORRT_8_INT8.format(version=version))
        return entry
    if precision == "int8":
        return bundle.find("onnx", "int8", "tensorrt", "modelopt")
    if precision == "fp16" and not weakly_typed:
        return bundle.find("onnx", "fp16")
    return bundle.find("onnx", "fp32")


def engine_source(bundle, precision: str, trt):
    """The bundle file this TensorRT module builds a `precision` engine from, or None; ExportError with the fix where
    the bundle has the graph only in a form this TensorRT cannot parse."""
    strongly_typed = hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED")
    return engine_sources(bundle, precision, weak_typing(trt), strongly_typed, trt.__version__)


def buildable_precisions(bundle, trt) -> tuple[list[str], dict[str, str]]:
    """(precisions this TensorRT can build from the bundle, fastest first; why each other one cannot)."""
    can, why = [], {}
    for precision in ("int8", "fp16", "fp32"):
        try:
            entry = engine_source(bundle, precision, trt)
        except ExportError as exc:
            why[precision] = str(exc)
            continue
        if entry is None:
            why[precision] = f"the bundle has no graph for a {precision} engine (export with --{precision})"
        else:
            can.append(precision)
    return can, why


def build_bundle_engines(
    bundle_dir: str | os.PathLike,
    precisions: tuple[str, ...] | None = None,
    out_dir: str | os.PathLike | None = None,
    public_key=None,
    on_skip=None,
    **kwargs,
) -> list[dict]:
    """`edgecls build-engine BUNDLE`: one engine per precision, into the local engine cache where the runtime looks
    (or as model.<precision>.engine in `out_dir`: export records those in the manifest it is about to seal).
    `precisions` None: FP16 and INT8 where this TensorRT can build them from the bundle; each one left out is passed
    to `on_skip(precision, why)`. A precision asked for by name that cannot be built raises, before any build."""
    from edgecls.bundle import Bundle

    require_tensorrt()
    import tensorrt as trt

    bundle = Bundle.open(bundle_dir, public_key=public_key)
    can, why = buildable_precisions(bundle, trt)
    if precisions is None:
        precisions = tuple(p for p in ("fp16", "int8") if p in can)
        for precision in ("fp16", "int8"):
            if precision not in can and on_skip is not None:
                on_skip(precision, why[precision])
        if not precisions:
            raise ExportError(f"this TensorRT can build no engine from {bundle.root}: {'; '.join(why.values())}")
    for precision in precisions:
        if precision not in can:
            raise ExportError(
                why.get(precision, f"unknown precision {precision!r}")
                + (" (and nvidia-modelopt installed, for the TensorRT INT8 graph)" if precision == "int8" else "")
            )
    built = []
    for precision in precisions:
        entry = engine_source(bundle, precision, trt)
        identity = engine_identity(trt, entry.sha256, precision, kwargs.get("device_index", 0))
        target = Path(out_dir) / f"model.{precision}.engine" if out_dir else cached_engine_path(identity)
        built.append(
            {**build_engine(bundle.read_verified(entry), entry.name, target, precision, **kwargs), "file": target.name}
        )
    return built
