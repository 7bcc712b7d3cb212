"""ONNX Runtime backend: CPU, CUDA or TensorRT execution provider, whichever is asked for and present."""

from __future__ import annotations

import functools
import os

import numpy as np

from edgecls.bundle import Bundle
from edgecls.errors import BackendUnavailableError, BundleError
from edgecls.feature_distance import OUTPUT as FEATURES
from edgecls.fileio import cache_dir
from edgecls.runtime.backends.base import Backend, BackendInfo, refuse_geometry

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
# Batch-1 default on a CPU, measured with tools/bench_threads.py (docs/latency.md, "Threads"): one thread for every
# precision. ONNX Runtime's own pool (a thread per core, spin-waiting) is up to 1.3× faster back to back, but between
# camera frames its threads spin: 34 ms of CPU per 33 ms frame for FP32 and FP16 on 2 cores, against 1.8 ms on one
# thread, for a paced latency within 9%. INT8 is as fast on one thread.
DEFAULT_CPU_THREADS = 1


def available_providers() -> list[str]:
    """ONNX Runtime's execution providers here; none where it is not installed (a TensorRT-only Jetson)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def available_devices() -> list[str]:
    have = set(available_providers())
    return [device for device, provider in PROVIDERS.items() if provider in have]


@functools.cache
def preload_cuda_libraries() -> None:
    """Load the CUDA and cuDNN libraries that onnxruntime-gpu's [cuda,cudnn] extras install under site-packages/nvidia
    before a CUDA or TensorRT session starts: ONNX Runtime does not search there by itself, and its CUDA provider
    then fails to load on a working GPU. Where they come from the system (a Jetson, a CUDA toolkit) this loads
    nothing new. `preload_dlls` exists from ONNX Runtime 1.21 on."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        preload()


def _graph(bundle: Bundle, precision: str, device: str, flavour: str | None):
    """The bundle's ONNX file for `precision` on this device (the TensorRT provider's own INT8 graph under it)."""
    entry = bundle.find("onnx", precision, "tensorrt" if device == "tensorrt" else "cpu", flavour)
    if entry is None:
        raise BundleError(
            f"bundle {bundle.root} has no {precision} ONNX model; export it with `edgecls export ... --{precision}`"
            if precision != "fp32"
            else f"bundle {bundle.root} has no model.onnx"
        )
    return entry


def _session_options(ort, device: str, threads: int | None, spin_wait: bool):
    """(SessionOptions, the threads it runs): one thread on a CPU unless told (DEFAULT_CPU_THREADS), 0 for all cores."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None and threads < 0:
        raise BackendUnavailableError(f"threads must be ≥ 0 (0: one per core), got {threads}")
    if threads is None and device == "cpu":
        threads = DEFAULT_CPU_THREADS
    if threads:
        options.intra_op_num_threads = threads
    if not spin_wait:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options, threads or (os.cpu_count() if device == "cpu" else None)


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(
        self,
        bundle: Bundle,
        precision: str = "fp32",
        device: str = "cpu",
        threads: int | None = None,
        flavour: str | None = None,
        spin_wait: bool = True,
    ):
        super().__init__(bundle, precision, device)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailableError(
                "onnxruntime is not installed: pip install 'edgecls[cpu]' (or [gpu]; on a Jetson, "
                "NVIDIA's onnxruntime-gpu wheel)"
            ) from exc
        if device not in PROVIDERS:
            raise BackendUnavailableError(f"onnxruntime device must be one of {', '.join(PROVIDERS)}, got {device!r}")
        if device not in available_devices():
            raise BackendUnavailableError(
                f"onnxruntime here has no {PROVIDERS[device]} (it has {', '.join(ort.get_available_providers())}); "
                "install onnxruntime-gpu for CUDA/TensorRT, or use device='cpu'"
            )
        self.entry = entry = _graph(bundle, precision, device, flavour)
        model = bundle.read_verified(entry)
        path = bundle.root / entry.name
        options, self.threads = _session_options(ort, device, threads, spin_wait)
        providers: list = [PROVIDERS[device]]
        if device == "tensorrt":
            providers = [("TensorrtExecutionProvider", self.tensorrt_options(entry.sha256)), "CUDAExecutionProvider"]
        if device != "cpu":
            providers.append("CPUExecutionProvider")
            preload_cuda_libraries()
        try:
            self.session = ort.InferenceSession(model, options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError(
                f"{path} cannot be loaded by onnxruntime ({type(exc).__name__}: {str(exc)[:200]}); "
                "the file is corrupt or was not written by edgecls: re-run `edgecls export`"
            ) from exc
        # A provider that fails during a run would otherwise be dropped silently and the session rebuilt on the next
        # one (CUDA, then CPU), while describe() still names the first: a robot must hear the failure instead.
        self.session.disable_fallback()
        refuse_geometry(bundle, entry.name, self.session.get_inputs()[0].shape)
        self.input_name = self.session.get_inputs()[0].name
        self.source_graph = entry.name
        outputs = [output.name for output in self.session.get_outputs()]
        self.has_features = FEATURES in outputs[1:]
        self.outputs = [outputs[0], FEATURES] if self.has_features else [outputs[0]]  # the logits come first
        self.providers = tuple(self.session.get_providers())
        if self.providers[0] != PROVIDERS[device]:  # ONNX Runtime only logs a provider that failed to start
            raise BackendUnavailableError(
                f"onnxruntime could not start {PROVIDERS[device]} for {path.name} and fell back to {self.providers[0]} "
                "(its log above says why: typically a TensorRT or CUDA library it cannot load); fix that, or ask for "
                f"device='{'cuda' if device == 'tensorrt' else 'cpu'}'"
            )

    def tensorrt_options(self, onnx_sha256: str, max_batch: int = 64) -> dict:
        """The TensorRT provider's options. Its engine cache is keyed by model file name and graph structure, not the
        weights, so each ONNX file (by sha256) gets a directory of its own: a re-exported model never runs the previous
        model's engine. The directory exists before the session starts (a missing one makes the provider fail and
        ONNX Runtime fall back). An explicit profile for batches 1..max_batch: a new batch size never rebuilds
        mid-run."""
        cache = cache_dir("ort-trt") / onnx_sha256[:24]
        cache.mkdir(parents=True, exist_ok=True)
        options = {
            "trt_fp16_enable": self.precision != "fp32",
            "trt_int8_enable": self.precision == "int8",
            "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": True,
            "trt_timing_cache_path": str(cache),
        }
        if not self.fixed_batch:
            chw = "x".join(map(str, self.input_shape))
            name = self.bundle.input.name
            options.update(
                trt_profile_min_shapes=f"{name}:1x{chw}",
                trt_profile_opt_shapes=f"{name}:1x{chw}",
                trt_profile_max_shapes=f"{name}:{max_batch}x{chw}",
            )
        return options

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        answers = [a.astype(np.float32, copy=False) for a in self.session.run(self.outputs, {self.input_name: batch})]
        return answers[0], answers[1] if self.has_features else None

    def describe(self) -> BackendInfo:
        flavour = f" ({self.entry.flavour})" if self.entry.flavour else ""
        return BackendInfo(
            self.name,
            self.device,
            self.precision,
            self.entry.name,
            self.providers,
            detail=f"{self.entry.name}{flavour} on {self.providers[0]}",
            threads=self.threads,
        )


def graph_geometry_problems(bundle: Bundle) -> list[str] | None:
    """For `edgecls info`: each ONNX file whose input disagrees with the manifest's geometry (what `Classifier.load`
    refuses), read by ONNX Runtime without optimizing; None where ONNX Runtime is not installed to read them."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    problems = []
    for entry in bundle.files():
        if entry.format != "onnx":
            continue
        session = ort.InferenceSession(bundle.read_verified(entry), options, providers=["CPUExecutionProvider"])
        try:
            refuse_geometry(bundle, entry.name, session.get_inputs()[0].shape)
        except BundleError as exc:
            problems.append(str(exc))
    return problems
