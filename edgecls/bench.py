"""`edgecls bench`: latency, throughput and accuracy for every backend × precision, in one table.

Method (as timm's benchmark and trtexec do it): warm up, then time many single calls at batch 1 and
report p50/p90/p99/mean; throughput from repeated calls at the larger batch; each backend synchronizes
before the clock is read. Every row carries its ratio to the PyTorch FP32 baseline measured in the same
run, so speed claims never compare numbers taken at different times or on different machines.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rich.table import Table

from edgecls.bundle import Bundle
from edgecls.console import console
from edgecls.errors import EdgeclsError
from edgecls.fileio import atomic_write_bytes, atomic_write_json
from edgecls.runtime.backends import available_backends, backend_class
from edgecls.runtime.preprocess import Preprocessor
from edgecls.runtime.stats import summarize


@dataclass(frozen=True)
class BenchOptions:
    backends: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ("fp32", "fp16", "int8")
    latency_batch: int = 1
    throughput_batch: int = 64
    iterations: int = 300
    warmup: int = 30
    data_dir: str | None = None
    eval_images: int | None = None
    json_path: str | None = None


def _variants(bundle: Bundle, backend: str, precision: str) -> list[dict]:
    """The (device, flavour) combinations of one backend and precision worth timing on this machine."""
    if backend == "onnxruntime":
        from edgecls.runtime.backends.onnxruntime import available_devices

        devices = available_devices()
        device = "cuda" if "cuda" in devices else "cpu"
        flavours = sorted({f.flavour for f in bundle.files() if f.format == "onnx" and f.precision == precision})
        return [{"device": device, "flavour": fl or None} for fl in flavours]
    if backend == "torch":
        import torch

        if precision == "fp16" and not torch.cuda.is_available():
            return []
        return [{"device": "cuda" if torch.cuda.is_available() else "cpu"}] if precision in ("fp32", "fp16") else []
    return [{"device": "cuda:0"}]


def time_calls(backend, batch: np.ndarray, iterations: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        backend.infer(batch)
    backend.synchronize()
    samples = np.empty(iterations)
    for i in range(iterations):
        t0 = time.perf_counter()
        backend.infer(batch)
        backend.synchronize()
        samples[i] = (time.perf_counter() - t0) * 1e3
    return samples


def _accuracy(backend, images: np.ndarray, labels: np.ndarray, chunk: int) -> float:
    preds = np.concatenate([backend.infer(images[i : i + chunk]).argmax(1) for i in range(0, len(images), chunk)])
    return float(np.mean(preds == labels))


def _load_test(bundle: Bundle, options: BenchOptions):
    from edgecls.data import load_dataset

    test = load_dataset(bundle.manifest.get("dataset", "cifar10"), "test", options.data_dir)
    if options.eval_images:
        test = test.take(np.arange(min(options.eval_images, len(test))))
    return test


def run_bench(target: str, options: BenchOptions) -> list[dict]:
    bundle_dir = Path(target)
    if not bundle_dir.is_dir():
        from edgecls.export.pipeline import ExportOptions, export_bundle

        bundle_dir = Path(f"exports/{target}")
        export_bundle(target, ExportOptions(fp16=True, int8=True, out=str(bundle_dir), data_dir=options.data_dir))
    bundle = Bundle.open(bundle_dir)
    test = _load_test(bundle, options)
    prep = Preprocessor(bundle.input, bundle.preprocess)
    images = prep.batch_from_images(test.images)
    rng = np.random.default_rng(0)
    lat_batch = images[rng.integers(0, len(images), options.latency_batch)]
    thr_batch = images[rng.integers(0, len(images), options.throughput_batch)]
    names = list(options.backends or available_backends())
    if "torch" in names:  # the baseline goes first, so every later row has its ratio
        names.remove("torch")
        names.insert(0, "torch")

    sizes = {f.name: f.bytes for f in bundle.files()}
    rows: list[dict] = []
    for name in names:
        cls = backend_class(name)
        for precision in options.precisions:
            try:
                variants = _variants(bundle, name, precision)
            except ImportError:
                variants = []
            for variant in variants:
                label = f"{name}/{variant['device']} {precision}" + (f" {variant['flavour']}" if variant.get("flavour") else "")
                try:
                    backend = cls(bundle, precision=precision, **variant)
                except (EdgeclsError, ImportError) as exc:
                    rows.append({"backend": name, "precision": precision, **variant, "skipped": str(exc)})
                    console.print(f"[yellow]skip[/] {label}: {exc}")
                    continue
                console.print(f"timing {label} …")
                latency = summarize(time_calls(backend, lat_batch, options.iterations, options.warmup))
                thr = time_calls(backend, thr_batch, max(10, options.iterations // 10), max(3, options.warmup // 10))
                info = backend.describe()
                rows.append({
                    "backend": name, "device": info.device, "precision": precision, "flavour": variant.get("flavour") or "",
                    "file": info.file, "mb": round(sizes[info.file] / 1e6, 3) if info.file in sizes else None,
                    "top1": _accuracy(backend, images, test.labels, options.throughput_batch),
                    "latency_ms": latency, "throughput_ips": options.throughput_batch / (np.median(thr) / 1e3),
                    "providers": list(info.providers),
                })
    base = next((r for r in rows if r["backend"] == "torch" and r["precision"] == "fp32" and "skipped" not in r), None)
    for r in rows:
        if "skipped" not in r and base:
            r["speedup_p50_vs_torch_fp32"] = base["latency_ms"]["p50"] / r["latency_ms"]["p50"]
            r["throughput_vs_torch_fp32"] = r["throughput_ips"] / base["throughput_ips"]
    _print(rows, test, options)
    if options.json_path:
        _write(rows, test, options)
    return rows


def _row_cells(r: dict) -> list[str]:
    lat = r["latency_ms"]
    speed = f"{r['speedup_p50_vs_torch_fp32']:.2f}×" if "speedup_p50_vs_torch_fp32" in r else "—"
    thr = f"{r['throughput_vs_torch_fp32']:.2f}×" if "throughput_vs_torch_fp32" in r else "—"
    return [f"{r['backend']}/{r['device']}", r["precision"] + (f" {r['flavour']}" if r["flavour"] and r["flavour"] != "fp16-io32" else ""),
            f"{r['top1']:.2%}", f"{lat['p50']:.3f}", f"{lat['p90']:.3f}", f"{lat['p99']:.3f}", f"{lat['mean']:.3f}",
            f"{r['throughput_ips']:,.0f}", speed, thr, f"{r['mb']:.2f}" if r["mb"] else "—"]


HEADER = ["backend", "precision", "top-1", "p50 ms", "p90 ms", "p99 ms", "mean ms", "img/s", "p50 vs torch", "img/s vs torch", "MB"]


def _print(rows: list[dict], test, options: BenchOptions) -> None:
    table = Table(title=f"bench: {test.name} ({len(test)} images), latency at batch {options.latency_batch}, "
                        f"throughput at batch {options.throughput_batch}")
    for col in HEADER:
        table.add_column(col)
    for r in rows:
        if "skipped" not in r:
            table.add_row(*_row_cells(r))
    console.print(table)


def _write(rows: list[dict], test, options: BenchOptions) -> None:
    from edgecls.plots import scatter

    path = Path(options.json_path)
    atomic_write_json(path, {"dataset": test.name, "samples": len(test), "latency_batch": options.latency_batch,
                             "throughput_batch": options.throughput_batch, "iterations": options.iterations, "rows": rows})
    measured = [r for r in rows if "skipped" not in r]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_row_cells(r)) + " |" for r in measured]
    atomic_write_bytes(path.with_suffix(".md"), ("\n".join(lines) + "\n").encode())
    points = [{"latency p50 (ms)": r["latency_ms"]["p50"], "top-1": r["top1"],
               "name": f"{r['backend']} {r['precision']} {r['flavour']}".strip()} for r in measured]
    if points:
        scatter(points, "latency p50 (ms)", "top-1", "name", path.with_suffix(".png"), "latency vs accuracy")
