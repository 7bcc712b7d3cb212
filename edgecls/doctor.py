"""`edgecls doctor BUNDLE`: on the target itself, what is installed and whether every backend gives the bundle's
answers.

The bundle carries a labelled sample of test images (`sample.npz`) and model.onnx's logits on it as export computed
them, so no dataset is needed on a robot. Each backend × precision this machine can run classifies the sample
through the runtime's own preprocessing and is compared with the FP32 reference (top-1 agreement, max |Δ logit|,
accuracy) and timed at batch 1; rows that cannot run say why. The reference is ONNX Runtime FP32 here where ONNX
Runtime is installed (and must reproduce export's top-1 within one image: a near tie may flip on another CPU), else
the recorded logits: a Jetson with TensorRT alone is checked too. Where TensorRT and ONNX Runtime both run,
Polygraphy also compares each engine with ONNX Runtime on the same inputs, independently of edgecls' backend code;
a missing or failing Polygraphy is a row's note or FAIL, never a traceback. Needs only the runtime (no torch).
"""

from __future__ import annotations

import glob
import importlib.metadata
import importlib.util
import io
import os
import time
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table

from edgecls.bundle import Bundle
from edgecls.errors import BundleError, EdgeclsError
from edgecls.runtime import Classifier
from edgecls.runtime.backends import cuda_device_count, installed_cuda_api, tensorrt_unavailable
from edgecls.runtime.engines import tensorrt_installed
from edgecls.runtime.host import host_info

SAMPLE = "sample.npz"
# Bounds for bundles whose export recorded no per-graph agreement (older bundles); newer ones set their own (`bounds`).
MIN_AGREEMENT = {"fp32": 0.99, "fp16": 0.98, "int8": 0.95}
FIXED_ATOL = {"fp32": 1e-3, "fp16": 5e-2, "int8": 0.5}
AGREEMENT_MARGIN = 0.02  # below what the graph itself agreed with FP32 at export: 6 of 300 sample images
MIN_ATOL = {"fp32": 1e-3, "fp16": 5e-2, "int8": 5e-2}  # |Δ logit| of an engine against the graph it was built from


def load_sample(bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    images, labels, _ = load_sample_logits(bundle)
    return images, labels


def load_sample_logits(bundle: Bundle) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(images, labels, model.onnx's logits as export computed them, or None for bundles older than that record)."""
    entry = next((f for f in bundle.files() if f.name == SAMPLE), None)
    if entry is None:
        raise BundleError(
            f"{bundle.root} carries no labelled sample ({SAMPLE}); re-export it with a dataset "
            "(edgecls export ... --data-dir DIR) to get one"
        )
    with np.load(io.BytesIO(bundle.read_verified(entry)), allow_pickle=False) as data:
        return data["images"], data["labels"], data["logits"] if "logits" in data.files else None


def onnxruntime_missing() -> str | None:
    if importlib.util.find_spec("onnxruntime") is None:
        return (
            "onnxruntime is not installed (a TensorRT-only install; on a Jetson NVIDIA's onnxruntime-gpu wheel for "
            "JetPack adds it, elsewhere 'edgecls[cpu]')"
        )
    return None


ONNXRUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime-gpu", "onnxruntime-openvino", "onnxruntime-directml")
OPENCV_DISTRIBUTIONS = (
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
)


def environment() -> dict:
    from edgecls.camera.video_uri import openable_sources, opencv_video_io
    from edgecls.runtime.backends.onnxruntime import available_providers

    env = {
        **host_info(),
        "onnxruntime_providers": available_providers(),
        "cameras": sorted(glob.glob("/dev/video*")),
        "cuda_api": installed_cuda_api(),
    }
    devices, problem = cuda_device_count()
    env["cuda_devices"], env["cuda_problem"] = devices, problem
    env["tensorrt"] = _tensorrt_version()
    env["onnxruntime_packages"] = _installed_distributions(ONNXRUNTIME_DISTRIBUTIONS)
    env["opencv_packages"] = _installed_distributions(OPENCV_DISTRIBUTIONS)
    env["video_io"], env["video_sources"] = opencv_video_io(), openable_sources()
    env["jetson"] = os.path.isfile("/etc/nv_tegra_release")
    env["warnings"] = install_warnings(env)
    return env


def _installed_distributions(names: tuple[str, ...]) -> list[str]:
    found = []
    for name in names:
        try:
            found.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


def install_warnings(env: dict) -> list[str]:
    """Installs that work until they don't: two ONNX Runtime builds over one module, a pip OpenCV hiding JetPack's."""
    warnings = []
    if len(env["onnxruntime_packages"]) > 1:
        warnings.append(
            f"{' and '.join(env['onnxruntime_packages'])} are both installed; they share the `onnxruntime` "
            "module and whichever was installed last wins (the GPU providers vanish if it was the CPU one). "
            "pip uninstall all of them, then install the one this machine needs"
        )
    if env["jetson"] and not env["video_io"]["gstreamer"]:
        warnings.append(
            f"this Jetson's OpenCV ({', '.join(env['opencv_packages']) or env['video_io']['module']}) has no "
            "GStreamer, so csi:// cameras cannot open: pip uninstall the OpenCV wheel and use JetPack's "
            "(venv --system-site-packages)"
        )
    return warnings


def _tensorrt_version() -> str | None:
    if not tensorrt_installed():
        return None
    import tensorrt

    return tensorrt.__version__


def _candidates(bundle: Bundle, env: dict) -> list[tuple[str, str, str, str | None]]:
    """(backend, device, precision, why it cannot run here or None)."""
    precisions = [p for p in ("fp32", "fp16", "int8") if bundle.find("onnx", p) is not None]
    no_ort = onnxruntime_missing()
    rows = [("onnxruntime", "cpu", p, no_ort) for p in precisions]
    cuda_ep = "CUDAExecutionProvider" in env["onnxruntime_providers"]
    rows += [
        ("onnxruntime", "cuda", p, no_ort or (None if cuda_ep else "onnxruntime has no CUDAExecutionProvider here"))
        for p in precisions
        if p != "int8"
    ]
    why = tensorrt_unavailable()
    if why == "TensorRT is not installed":
        why += " (Jetson: JetPack; desktop: pip install 'edgecls[tensorrt-cu12]')"
    rows += [("tensorrt", "cuda:0", p, why) for p in precisions]
    torch_why = (
        (None if importlib.util.find_spec("torch") else "torch is not installed (a runtime-only install)")
        if bundle.find("pytorch", "fp32")
        else "no model.pt: the source is a model edgecls did not train"
    )
    rows.append(("torch", "cpu", "fp32", torch_why))
    return rows


def _batch1_ms(clf: Classifier, x: np.ndarray, iterations: int) -> float:
    for i in range(min(10, iterations)):
        clf.infer(x[i % len(x)][None])
    times = []
    for i in range(iterations):
        start = time.perf_counter()
        clf.infer(x[i % len(x)][None])
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def reference_logits(bundle_dir, bundle: Bundle) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(preprocessed sample, labels, FP32 reference logits, what the reference is)."""
    from edgecls.runtime.preprocess import Preprocessor

    images, labels, recorded = load_sample_logits(bundle)
    x = Preprocessor(bundle.input, bundle.preprocess).batch_from_images(images)
    why_not = onnxruntime_missing()
    if why_not is None:
        with Classifier.load(bundle_dir, backend="onnxruntime", precision="fp32", device="cpu") as reference:
            return x, labels, reference.infer(x), {"kind": "onnxruntime fp32 here", "file": "model.onnx"}
    if recorded is None:
        raise BundleError(
            f"{why_not}, and {bundle.root} is older than the reference logits export now records in {SAMPLE}: "
            "re-export the bundle, or install ONNX Runtime here, so doctor has an FP32 reference"
        )
    return x, labels, recorded, {"kind": "logits recorded at export", "file": SAMPLE, "why": why_not}


def run_doctor(bundle_dir: str | os.PathLike, iterations: int = 100) -> dict:
    from edgecls.train import torch_backend  # noqa: F401  (registers the torch row's backend; imports no torch)

    bundle = Bundle.open(bundle_dir)
    env = environment()
    bundle.verify_all()
    x, labels, ref_logits, reference = reference_logits(bundle_dir, bundle)
    export_top1 = (bundle.manifest.accuracy or {}).get("sample", {}).get("files", {}).get("model.onnx", {}).get("top1")
    rows = []
    for backend, device, precision, why in _candidates(bundle, env):
        row = {"backend": backend, "device": device, "precision": precision}
        if why:
            rows.append({**row, "status": "not run", "why": why})
            continue
        try:
            clf = Classifier.load(bundle_dir, backend=backend, precision=precision, device=device)
            logits = clf.infer(x)
        except (EdgeclsError, ImportError, RuntimeError, OSError) as exc:
            rows.append({**row, "status": "FAIL", "why": f"{type(exc).__name__}: {exc}"})
            continue
        rows.append(_compare(bundle, clf, row, x, labels, logits, ref_logits, iterations))
    reference_top1 = float(np.mean(ref_logits.argmax(1) == labels))
    # one image of the sample: a near tie flips with the CPU's summation order (AVX2, AVX-512, ARM)
    reproduced = export_top1 is None or abs(reference_top1 - export_top1) <= 1.0 / len(labels) + 1e-12
    failed = [r for r in rows if r["status"] == "FAIL"]
    ran = [r for r in rows if r["status"] == "ok"]
    against = "ONNX Runtime FP32" if reference["file"] == "model.onnx" else "the FP32 logits recorded at export"
    if not ran and not failed:
        verdict = "FAIL: no backend can run this bundle here: " + "; ".join(
            dict.fromkeys(r["why"] for r in rows if r.get("why"))
        )
    elif failed or not reproduced:
        verdict = f"FAIL: {len(failed)} of {len(ran) + len(failed)} rows disagree with {against}" + (
            ""
            if reproduced
            else f"; ONNX Runtime FP32 scores {reference_top1:.2%} on the sample "
            f"here but {export_top1:.2%} where the bundle was exported"
        )
    else:
        verdict = (
            f"OK: {len(ran)} backend/precision rows agree with {against} on the bundle's {len(labels)} images"
            f"; {len(rows) - len(ran)} could not run here"
        )
    return {
        "schema": "edgecls.doctor/1",
        "bundle": str(Path(bundle_dir)),
        "model": bundle.manifest.model,
        "environment": env,
        "sample": {"images": int(len(labels)), "export_top1_fp32": export_top1, "reference_top1": reference_top1},
        "reference": reference,
        "rows": rows,
        "verdict": verdict,
        "ok": bool(ran) and not failed and reproduced,
    }


def _compare(bundle, clf, row, x, labels, logits, ref_logits, iterations: int) -> dict:
    """One row's figures against the reference, its status from the bounds export measured, and (engines) Polygraphy's
    own comparison, whose absence or failure is reported in the row."""
    agreement = float(np.mean(logits.argmax(1) == ref_logits.argmax(1)))
    row.update(
        top1=float(np.mean(logits.argmax(1) == labels)),
        agreement=agreement,
        max_abs_diff=float(np.abs(logits - ref_logits).max()),
        batch1_ms=_batch1_ms(clf, x, iterations),
        detail=clf.info.detail,
    )
    graph = clf.backend.source_graph if row["backend"] == "tensorrt" else clf.info.file
    row["bounds"] = limit = bounds(bundle, graph, row["precision"])
    row["status"] = "ok" if agreement >= limit["agreement"] else "FAIL"
    if row["status"] == "FAIL":
        row["why"] = (
            f"agrees with the FP32 reference on {agreement:.1%} of the sample, below {limit['agreement']:.1%} "
            f"({limit['from']})"
        )
    if row["backend"] == "tensorrt":
        row["polygraphy"] = check = polygraphy_row(clf.backend.engine_path, bundle.root / graph, x[:32], limit["atol"])
        if check.get("passed") is False:
            row["status"], row["why"] = "FAIL", check["why"]
    return row


def polygraphy_row(engine_path: Path, onnx_path: Path, batch: np.ndarray, atol: float) -> dict:
    """Polygraphy's comparison of an engine with ONNX Runtime, or why it was not made ({"skipped": why}) or failed
    ({"passed": False, "why": ...}): Polygraphy and ONNX Runtime are optional on a target."""
    missing = [m for m in ("polygraphy", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        return {"skipped": f"{' and '.join(missing)} not installed, so Polygraphy's independent check was not made"}
    try:
        result = polygraphy_check(engine_path, onnx_path, batch, atol)
    except Exception as exc:  # Polygraphy raises its own error kinds (PolygraphyException) and CUDA loader errors
        return {"passed": False, "why": f"Polygraphy could not compare the engine: {type(exc).__name__}: {exc}"}
    if not result["passed"]:
        result["why"] = (
            f"Polygraphy: the engine and ONNX Runtime running {onnx_path.name} differ by more than {atol:.3g}"
        )
    return result


def bounds(bundle: Bundle, graph: str, precision: str) -> dict:
    """How close a backend running `graph` must come, from what export measured on this very sample: top-1 agreement
    with FP32 at most AGREEMENT_MARGIN below the graph's own, and (engines) |Δ logit| against the graph they were
    built from no larger than the graph's own distance from FP32. An INT8 graph is up to ~0.9 logits from FP32 by
    design; holding its engine to a fixed 0.5 against FP32 failed correct engines."""
    recorded = ((bundle.manifest.accuracy or {}).get("sample") or {}).get("files", {}).get(graph, {})
    if "agreement_with_fp32" not in recorded:
        return {
            "agreement": MIN_AGREEMENT[precision],
            "atol": FIXED_ATOL[precision],
            "from": "fixed bounds (the bundle records no per-graph agreement: re-export it for measured ones)",
        }
    scale = recorded["max_abs_diff_vs_fp32"] * (2 if precision == "fp16" else 1)
    return {
        "agreement": max(0.0, recorded["agreement_with_fp32"] - AGREEMENT_MARGIN),
        "atol": max(MIN_ATOL[precision], scale),
        "from": f"export's measurement of {graph} on this sample (agreement {recorded['agreement_with_fp32']:.1%}, "
        f"max |Δ logit| {recorded['max_abs_diff_vs_fp32']:.3g} vs FP32)",
    }


def polygraphy_check(engine_path: Path, onnx_path: Path, batch: np.ndarray, atol: float) -> dict:
    """A TensorRT engine against ONNX Runtime running the graph it was built from, through Polygraphy's runners and
    comparator, one image at a time."""
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    return polygraphy_compare(TrtRunner(EngineFromBytes(Path(engine_path).read_bytes())), onnx_path, batch, atol)


def polygraphy_compare(candidate, onnx_path: Path, batch: np.ndarray, atol: float) -> dict:
    """`candidate` against ONNX Runtime on the CPU with graph optimizations off: Q/DQ graphs are then computed as
    written (ONNX Runtime's optimizer has no FP16 kernels to fold a ModelOpt graph's FP16 scales with)."""
    import onnxruntime as ort
    from polygraphy.backend.onnxrt import OnnxrtRunner
    from polygraphy.comparator import Comparator, SimpleCompareFunc

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    reference = OnnxrtRunner(lambda: ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"]))
    feeds = [{"input": batch[i : i + 1]} for i in range(len(batch))]
    results = Comparator.run([candidate, reference], data_loader=feeds)
    accuracy = Comparator.compare_accuracy(results, compare_func=SimpleCompareFunc(atol=atol, rtol=0.0))
    return {"passed": bool(accuracy), "atol": atol, "images": len(batch), "runners": [candidate.name, reference.name]}


def print_doctor_report(report: dict, out) -> None:
    """`edgecls doctor`'s report on the rich console `out`: the environment, its warnings and one row per backend."""
    env = report["environment"]
    out.print(
        f"[bold]{report['model']}[/] — {env['cpu']} ({env['logical_cores']} cores, INT8 dot product: "
        f"{env['int8_dot_product']}), GPUs: {', '.join(env['gpus']) or 'none'}"
    )
    out.print(
        f"TensorRT {env['tensorrt'] or 'not installed'}; CUDA API {env['cuda_api'] or 'none'}, "
        f"{env['cuda_devices']} device(s){' (' + env['cuda_problem'] + ')' if env['cuda_problem'] else ''}; "
        + (
            f"ONNX Runtime {env['versions']['onnxruntime']} providers {', '.join(env['onnxruntime_providers'])}; "
            if env["onnxruntime_providers"]
            else "ONNX Runtime not installed; "
        )
        + f"cameras: {', '.join(env['cameras']) or 'none'}"
    )
    io = env["video_io"]
    out.print(
        f"OpenCV {io['opencv']} ({', '.join(env['opencv_packages']) or io['module']}), GStreamer "
        f"{'yes' if io['gstreamer'] else 'no'}; sources it opens: "
        + "; ".join(f"{kind} {escape(answer)}" for kind, answer in env["video_sources"].items())
    )
    for warning in env["warnings"]:
        out.print(f"[bold yellow]WARN[/] {escape(warning)}")
    table = Table(
        title=f"{report['sample']['images']} labelled images carried by the bundle, "
        f"against {report['reference']['kind']}"
    )
    for col in ("backend", "precision", "status", "top-1", "agreement", "max |Δ logit|", "batch-1 p50 ms", "note"):
        table.add_column(col)
    for r in report["rows"]:
        ran = "top1" in r
        table.add_row(
            f"{r['backend']}/{r['device']}",
            r["precision"],
            r["status"],
            f"{r['top1']:.2%}" if ran else "—",
            f"{r['agreement']:.2%}" if ran else "—",
            f"{r['max_abs_diff']:.3g}" if ran else "—",
            f"{r['batch1_ms']:.3f}" if ran else "—",
            escape(r.get("why") or r.get("detail", "")),
        )
    out.print(table)
