"""`edgecls doctor BUNDLE --first-run`: the checks a first Jetson or GPU desktop runs, in one command, with a report
to send back.

The GPU half of edgecls was written against NVIDIA's documentation and tested with fakes; the first real machine is
its first tester. Each check prints PASS, FAIL, WARN or SKIP (with the reason), and the JSON report holds every
number behind them. Checks that need what this machine lacks (TensorRT, a CUDA device, ONNX Runtime's TensorRT
provider) SKIP and say so; the rest run anywhere, a plain CPU included.
"""

from __future__ import annotations

import importlib.util
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edgecls.bundle import Bundle
from edgecls.errors import EdgeclsError, EngineMismatchError

BATCH_SIZES = (1, 2, 7, 63, 64, 65, 130)  # around the engine profile's 64 and past two of it
BATCH_ATOL = {"fp32": 1e-4, "fp16": 1e-2, "int8": 1e-2}  # the same image alone and inside a batch, logits
MEMORY_SLACK_MIB = 16


@dataclass
class Check:
    name: str
    status: str  # PASS, FAIL, WARN, SKIP
    detail: str
    data: dict = field(default_factory=dict)


def check_environment(env: dict) -> Check:
    versions = {
        k: env["versions"].get(k)
        for k in ("python", "numpy", "onnxruntime", "opencv", "tensorrt")
        if k in env["versions"]
    }
    data = {
        "versions": versions,
        "onnxruntime_packages": env["onnxruntime_packages"],
        "opencv_packages": env["opencv_packages"],
        "cuda_api": env["cuda_api"],
        "jetson": env["jetson"],
    }
    problems = list(env["warnings"])
    numpy_major = int(str(np.__version__).split(".")[0])
    for module in ("cv2", "tensorrt"):
        if importlib.util.find_spec(module) is None:
            continue
        try:
            __import__(module)
        except ImportError as exc:  # JetPack's modules are built against numpy 1.x
            hint = " (a JetPack module built against numpy 1.x: pip install 'numpy<2')" if numpy_major >= 2 else ""
            return Check("environment", "FAIL", f"import {module} fails: {exc}{hint}", data)
    if env["jetson"] and numpy_major >= 2:
        problems.append(
            "numpy 2 beside JetPack's python3 modules: they imported, but if one fails later, pip install 'numpy<2'"
        )
    status = "WARN" if problems else "PASS"
    return Check(
        "environment",
        status,
        "; ".join(problems)
        or f"numpy {np.__version__}, {', '.join(env['onnxruntime_packages'])}, CUDA API {env['cuda_api'] or 'none'}",
        data,
    )


def check_gpu(env: dict) -> Check:
    if not env["cuda_devices"]:
        return Check("gpu", "SKIP", f"no usable CUDA device ({env['cuda_problem']})")
    from edgecls.runtime.engines import gpu_identity

    identity = gpu_identity(0)
    return Check(
        "gpu",
        "PASS",
        f"{identity['gpu']} sm_{identity['compute_capability']}, {identity['sm_count']} SMs, "
        f"{identity['memory_mib']} MiB",
        identity,
    )


def check_cameras(env: dict) -> Check:
    sources = env["video_sources"]
    problems = [w for w in env["warnings"] if "csi://" in w]
    return Check(
        "camera sources",
        "WARN" if problems else "PASS",
        "; ".join(problems) or "; ".join(f"{k} {v.split(':')[0].split(' (')[0]}" for k, v in sources.items()),
        {"opencv": env["video_io"], "sources": sources, "devices": env["cameras"]},
    )


def check_doctor(bundle_dir: Path) -> list[Check]:
    from edgecls.doctor import run_doctor

    report = run_doctor(bundle_dir, iterations=20)
    checks = []
    for row in report["rows"]:
        name = f"sample {row['backend']}/{row['device']} {row['precision']}"
        status = {"ok": "PASS", "FAIL": "FAIL"}.get(row["status"], "SKIP")
        detail = (
            f"top-1 {row['top1']:.2%}, agrees with FP32 on {row['agreement']:.1%} (≥ "
            f"{row['bounds']['agreement']:.1%}), "
            f"max |Δ logit| {row['max_abs_diff']:.3g}, batch-1 {row['batch1_ms']:.3f} ms"
            if "top1" in row
            else ""
        )
        checks.append(Check(name, status, row.get("why") or detail, row))
    return checks


def runnable(bundle: Bundle, env: dict) -> list[tuple[str, str, str]]:
    """(backend, device, precision) of every bundle graph this machine can run: doctor's candidates that can run
    here."""
    from edgecls.doctor import _candidates

    return [(b, d, p) for b, d, p, why in _candidates(bundle, env) if why is None and b != "torch"]


def check_batches(bundle_dir: Path, x: np.ndarray, combos: list[tuple[str, str, str]]) -> list[Check]:
    """Every batch size around the engine profile gives each image the answer it gets alone."""
    from edgecls.runtime import Classifier

    checks = []
    for backend, device, precision in combos:
        name = f"batches {backend} {precision}"
        try:
            with Classifier.load(bundle_dir, backend=backend, precision=precision, device=device) as clf:
                alone = np.concatenate([clf.infer(x[i : i + 1]) for i in range(max(BATCH_SIZES))])
                worst = {n: float(np.abs(clf.infer(x[:n]) - alone[:n]).max()) for n in BATCH_SIZES}
        except (EdgeclsError, RuntimeError) as exc:
            checks.append(Check(name, "FAIL", f"{type(exc).__name__}: {exc}"))
            continue
        bad = {n: d for n, d in worst.items() if d > BATCH_ATOL[precision]}
        checks.append(
            Check(
                name,
                "FAIL" if bad else "PASS",
                f"batches {', '.join(map(str, bad))} differ from batch-1 answers (max |Δ| {max(bad.values()):.3g})"
                if bad
                else f"batches {', '.join(map(str, BATCH_SIZES))} equal batch-1 answers "
                f"(max |Δ| {max(worst.values()):.2g} ≤ {BATCH_ATOL[precision]:g})",
                {"max_abs_diff": worst},
            )
        )
    return checks


def check_threads(bundle_dir: Path, x: np.ndarray, combos: list[tuple[str, str, str]]) -> list[Check]:
    """Two threads sharing one Classifier get what one thread gets, image for image."""
    from edgecls.runtime import Classifier

    checks = []
    for backend, device, precision in combos:
        with Classifier.load(bundle_dir, backend=backend, precision=precision, device=device) as clf:
            sequential = [clf.infer(x[i : i + 1]) for i in range(len(x))]
            results = _in_two_threads(lambda: [clf.infer(x[i : i + 1]) for i in range(len(x))])  # noqa: B023 (joined here)
        same = all(np.array_equal(a, b) for result in results for a, b in zip(result, sequential, strict=True))
        checks.append(
            Check(
                f"threads {backend} {precision}",
                "PASS" if same else "FAIL",
                f"two threads × {len(x)} calls {'equal' if same else 'differ from'} sequential answers",
            )
        )
    return checks


def _in_two_threads(work: Callable[[], list]) -> list[list]:
    results: list[list] = [[], []]

    def run(k: int) -> None:
        results[k] = work()

    threads = [threading.Thread(target=run, args=(k,)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def check_engines(bundle_dir: Path) -> list[Check]:
    """Each precision built twice in a fresh cache (the second reuses the timing cache), its I/O dtypes and profile,
    device memory returned after close, and the sidecar refusing another GPU, TensorRT or engine hash."""
    from edgecls.runtime.backends import tensorrt_unavailable

    why = tensorrt_unavailable()
    if why:
        return [Check("engines", "SKIP", why)]
    import tensorrt as trt

    from edgecls.runtime.engines import buildable_precisions

    checks = []
    bundle = Bundle.open(bundle_dir)
    can, cannot = buildable_precisions(bundle, trt)
    for precision in ("fp32", "fp16", "int8"):
        if bundle.find("onnx", precision) is None:
            continue
        name = f"engine {precision}"
        if precision not in can:
            checks.append(Check(name, "SKIP", cannot[precision]))
            continue
        checks.append(_check_engine(bundle_dir, precision, trt))
    checks.append(_check_engine_memory(bundle_dir))
    return checks


def _check_engine(bundle_dir: Path, precision: str, trt) -> Check:
    """One precision's engine built twice in a fresh cache, its I/O and profile, and its sidecar's refusals."""
    from edgecls.runtime.engines import build_bundle_engines, check_engine, read_sidecar

    name = f"engine {precision}"
    with tempfile.TemporaryDirectory(prefix="edgecls-first-run-") as tmp:
        try:
            times = []
            for _ in range(2):
                start = time.perf_counter()
                (built,) = build_bundle_engines(bundle_dir, (precision,), out_dir=tmp)
                times.append(time.perf_counter() - start)
        except EdgeclsError as exc:
            return Check(name, "FAIL", str(exc))
        engine_path = Path(tmp) / built["file"]
        data = engine_path.read_bytes()
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(data)
        io = {
            engine.get_tensor_name(i): str(engine.get_tensor_dtype(engine.get_tensor_name(i)))
            for i in range(engine.num_io_tensors)
        }
        profile = [list(s) for s in engine.get_tensor_profile_shape("input", 0)]
        refused = []
        expected = {k: v for k, v in read_sidecar(engine_path).items()}
        for key, wrong in (("gpu", "another GPU"), ("tensorrt", "0.0.0")):
            try:
                check_engine(engine_path, {**expected, key: wrong}, data)
            except EngineMismatchError:
                refused.append(key)
        try:
            check_engine(engine_path, expected, data + b"x")
        except EngineMismatchError:
            refused.append("engine hash")
    ok = profile[0][0] == 1 and profile[2][0] == built["max_batch"] and len(refused) == 3
    return Check(
        name,
        "PASS" if ok else "FAIL",
        f"built in {times[0]:.1f} s, again in {times[1]:.1f} s (timing cache), mode {built['mode']}, "
        f"tf32 {built['tf32']}, I/O {io}, profile {profile}, sidecar refuses {', '.join(refused)}",
        {"build_s": times, "io": io, "profile": profile, "sidecar": built},
    )


def _check_engine_memory(bundle_dir: Path) -> Check:
    """Device memory returned after a TensorRT Classifier is closed (the second of two loads)."""
    from edgecls.runtime import Classifier
    from edgecls.runtime.backends.cuda_api import open_cuda

    cuda = open_cuda(0)

    def load_run_close() -> None:
        with Classifier.load(bundle_dir, backend="tensorrt", precision="fp32") as clf:
            clf.infer(np.zeros((64, *clf.backend.input_shape), np.float32))

    load_run_close()  # the CUDA context and lazily loaded kernels stay for the process: not a leak
    with cuda.active():
        free_before, total = cuda.memory_info()
    load_run_close()
    with cuda.active():
        free_after, _ = cuda.memory_info()
    lost = (free_before - free_after) >> 20
    return Check(
        "engine memory",
        "PASS" if lost <= MEMORY_SLACK_MIB else "FAIL",
        f"{lost} MiB of {total >> 20} not returned after close() (≤ {MEMORY_SLACK_MIB} expected)",
        {"free_before": free_before, "free_after": free_after},
    )


def check_ort_tensorrt(bundle_dir: Path, x: np.ndarray) -> Check:
    """ONNX Runtime's TensorRT provider: really the first provider, and one engine across batch sizes (no rebuild)."""
    from edgecls.fileio import cache_dir
    from edgecls.runtime.backends.onnxruntime import OnnxRuntimeBackend, available_devices

    if "tensorrt" not in available_devices():
        return Check("onnxruntime tensorrt", "SKIP", "this ONNX Runtime has no TensorrtExecutionProvider")
    bundle = Bundle.open(bundle_dir)
    try:
        backend = OnnxRuntimeBackend(bundle, "fp32", device="tensorrt")
        cache = cache_dir("ort-trt") / bundle.find("onnx", "fp32").sha256[:24]
        counts = []
        for n in (1, 7, 64, 1):
            backend.infer(x[:n])
            counts.append(len(list(cache.glob("*.engine"))))
    except EdgeclsError as exc:
        return Check("onnxruntime tensorrt", "FAIL", str(exc))
    ok = backend.providers[0] == "TensorrtExecutionProvider" and len(set(counts)) == 1
    return Check(
        "onnxruntime tensorrt",
        "PASS" if ok else "FAIL",
        f"providers {list(backend.providers)}; engines in its cache after batches 1, 7, 64, 1: {counts}",
    )


def check_cuda_adapters() -> list[Check]:
    from edgecls.runtime.backends import cuda_api

    checks = []
    for name, module, cls in (("pycuda", "pycuda", cuda_api.PyCuda), ("cuda-python", "cuda", cuda_api.CudaPython)):
        if importlib.util.find_spec(module) is None:
            checks.append(Check(f"cuda adapter {name}", "SKIP", f"{name} is not installed"))
            continue
        try:
            cuda = cls(0)
            with cuda.active():
                host, back = cuda.pinned((4, 8), np.float32), cuda.pinned((4, 8), np.float32)
                host[...] = np.arange(32, dtype=np.float32).reshape(4, 8)
                stream, device = cuda.stream(), cuda.alloc(host.nbytes)
                cuda.to_device(device, host, stream)
                cuda.to_host(back, device, stream)
                cuda.synchronize(stream)
                same = np.array_equal(host, back)
                cuda.free(device)
                for array in (host, back):
                    cuda.free_pinned(array)
                cuda.destroy_stream(stream)
        except Exception as exc:  # no driver or device: the adapter's own error types
            checks.append(
                Check(
                    f"cuda adapter {name}",
                    "SKIP" if "device" in str(exc).lower() or "driver" in str(exc).lower() else "FAIL",
                    f"{type(exc).__name__}: {exc}",
                )
            )
            continue
        checks.append(
            Check(
                f"cuda adapter {name}",
                "PASS" if same else "FAIL",
                f"{cuda.identity()['gpu']}: host → device → host round trip {'exact' if same else 'WRONG'}",
            )
        )
    return checks


def run_first_run(bundle_dir: str | Path, progress: Callable[[Check], None] | None = None) -> dict:
    from edgecls.doctor import environment, load_sample
    from edgecls.runtime.preprocess import Preprocessor

    bundle_dir = Path(bundle_dir)
    bundle = Bundle.open(bundle_dir)
    bundle.verify_all()
    env = environment()
    images, _ = load_sample(bundle)
    prep = Preprocessor(bundle.input, bundle.preprocess)
    x = prep.batch_from_images(np.resize(images, (max(BATCH_SIZES), *images.shape[1:])))
    checks: list[Check] = []

    def add(found: Check | list[Check]) -> None:
        for check in found if isinstance(found, list) else [found]:
            checks.append(check)
            if progress:
                progress(check)

    add(check_environment(env))
    add(check_gpu(env))
    add(check_cameras(env))
    add(check_doctor(bundle_dir))
    combos = runnable(bundle, env)
    add(check_batches(bundle_dir, x, combos))
    add(check_threads(bundle_dir, x[:32], combos))
    add(check_engines(bundle_dir))
    add(check_ort_tensorrt(bundle_dir, x))
    add(check_cuda_adapters())
    counts = {s: sum(c.status == s for c in checks) for s in ("PASS", "FAIL", "WARN", "SKIP")}
    return {
        "schema": "edgecls.first-run/1",
        "bundle": str(bundle_dir),
        "model": bundle.manifest.model,
        "counts": counts,
        "ok": counts["FAIL"] == 0,
        "environment": env,
        "checks": [asdict(c) for c in checks],
    }
