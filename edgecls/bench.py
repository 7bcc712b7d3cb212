"""`edgecls bench`: latency, throughput and accuracy for every backend × precision, in one table.

Method (as timm's benchmark and trtexec do it, plus what a robot sees): warm up, then time batch-1 calls
and report percentiles. Every row is timed twice:

- hot: calls back to back, the figure most benchmarks print;
- paced: one call every `pace_ms` (a 30 fps camera by default): the latency a camera loop actually gets,
  measured 2–3× the hot one on a 2-core CPU (cold caches and idle cores between calls, most likely).

Each timing is end to end from a camera-sized BGR frame (preprocess + inference + postprocess, through
`Classifier.predict`) and, from the same calls, inference alone. Throughput comes from repeated calls at
a larger batch. Each timing also records the process's CPU milliseconds per call (threads spinning between paced
calls show there, not in latency). Ratios are against the PyTorch FP32 row of the same run; a measurement whose p99 is
more
than `UNSTABLE_P99_OVER_P50` times its p50 is flagged and never used as a baseline.
"""

from __future__ import annotations

import os
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table

from edgecls.bundle import Bundle
from edgecls.camera.sources import ReplaySource
from edgecls.camera.stats import summarize
from edgecls.console import console
from edgecls.errors import EdgeclsError, IntegrityError, SignatureError
from edgecls.fileio import atomic_write_bytes, atomic_write_json
from edgecls.measure_options import BenchOptions
from edgecls.options import parse_size
from edgecls.runtime.backends import available_backends, backend_class
from edgecls.runtime.classifier import Classifier
from edgecls.runtime.host import OtherWork, host_info
from edgecls.runtime.preprocess import Preprocessor
from edgecls.train import torch_backend  # noqa: F401  (registers the torch baseline; imports no torch)

SCHEMA = "edgecls.bench/2"
UNSTABLE_P99_OVER_P50 = 5.0
BUSY_OTHER_CORES = 0.5  # other processes' average CPU use during the bench, in cores
SLOW_P50_OVER_MIN = 3.0  # a run slow throughout (a busy core, spin-waiting threads) never trips the p99 rule
MODES = ("hot", "paced")
PARTS = ("end_to_end_ms", "inference_ms")
CPU_OVER_LATENCY = 1.5  # CPU time per paced frame above this multiple of its latency: threads spin between frames


def _variants(bundle: Bundle, backend: str, precision: str) -> list[dict]:
    """The (device, flavour) combinations of one backend and precision worth timing on this machine.

    TensorRT's INT8 graph is left to the TensorRT backend: under ONNX Runtime it would time (and score) a
    graph made for another engine's kernels."""
    if backend == "onnxruntime":
        from edgecls.runtime.backends.onnxruntime import available_devices

        devices = available_devices()
        device = "cuda" if "cuda" in devices else "cpu"
        flavours = sorted(
            {
                f.flavour
                for f in bundle.files()
                if f.format == "onnx" and f.precision == precision and f.target != "tensorrt"
            }
        )
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


def time_frames(clf: Classifier, frame: np.ndarray, iterations: int, warmup: int, pace_ms: float = 0.0) -> dict:
    """End-to-end and inference milliseconds of `clf.predict(frame)`, back to back or one call every `pace_ms`, and the
    process's CPU milliseconds per call over the whole loop, waits included: threads that spin between paced calls
    burn a core the robot's other work could have had, and only CPU time shows it."""
    for _ in range(warmup):
        clf.predict(frame)
    end_to_end, inference = np.empty(iterations), np.empty(iterations)
    cpu_started = time.process_time()
    next_due = time.perf_counter()
    for i in range(iterations):
        if pace_ms:
            next_due += pace_ms / 1e3
            time.sleep(max(0.0, next_due - time.perf_counter()))
        t0 = time.perf_counter()
        pred = clf.predict(frame)
        end_to_end[i] = (time.perf_counter() - t0) * 1e3
        inference[i] = pred.timings_ms["inference"]
    cpu_ms = (time.process_time() - cpu_started) * 1e3 / iterations
    return {"end_to_end_ms": end_to_end, "inference_ms": inference, "cpu_ms_per_call": cpu_ms}


def is_unstable(stats: dict, mode: str = "hot") -> bool:
    """Tails far above the median, or (back to back, where every call should take about the least) a median far
    above the least; paced calls may legitimately run slower than the fastest back-to-back one."""
    slow = mode == "hot" and stats["p50"] > SLOW_P50_OVER_MIN * stats.get("min", stats["p50"])
    return slow or stats["p99"] > UNSTABLE_P99_OVER_P50 * stats["p50"]


def load_average() -> float | None:
    """The 1-minute load average (None where the OS has none): above the core count, work waits for a core."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _accuracy(backend, images: np.ndarray, labels: np.ndarray, chunk: int) -> float:
    preds = np.concatenate([backend.infer(images[i : i + chunk]).argmax(1) for i in range(0, len(images), chunk)])
    return float(np.mean(preds == labels))


SAMPLE_NOTE = "no dataset recorded: the labels are what export measured them as"


def _load_test(bundle: Bundle, options: BenchOptions):
    """The bundle's test set; for a model exported from unlabelled images only, the labelled sample it carries."""
    from edgecls.data import load_for_model
    from edgecls.data.imageset import ImageSet
    from edgecls.doctor import load_sample

    if bundle.manifest.dataset is None:
        images, labels = load_sample(bundle)
        return ImageSet(f"{bundle.root.name} sample ({SAMPLE_NOTE})", images, labels, tuple(bundle.classes))
    test = load_for_model(bundle.manifest.dataset, "test", options.data_dir, bundle.input, bundle.preprocess)
    if options.eval_images:
        test = test.take(np.arange(min(options.eval_images, len(test))))
    return test


def _measure(
    backend, bundle: Bundle, frame: np.ndarray, images: np.ndarray, labels: np.ndarray, options: BenchOptions
) -> dict:
    clf = Classifier(bundle, backend, reason="bench")
    timings = {
        "hot": time_frames(clf, frame, options.iterations, options.warmup),
        "paced": time_frames(clf, frame, options.iterations, min(options.warmup, 5), options.pace_ms),
    }
    batch = images[np.random.default_rng(0).integers(0, len(images), options.throughput_batch)]
    thr = time_calls(backend, batch, max(10, options.iterations // 10), max(3, options.warmup // 10))
    row = {
        mode: {
            **{part: summarize(parts[part]) for part in PARTS},
            "cpu_ms_per_call": round(parts["cpu_ms_per_call"], 4),
        }
        for mode, parts in timings.items()
    }
    row["unstable"] = [f"{mode}.{part}" for mode in MODES for part in PARTS if is_unstable(row[mode][part], mode)]
    row["throughput_ips"] = options.throughput_batch / (np.median(thr) / 1e3)
    row["top1"] = _accuracy(backend, images, labels, options.throughput_batch)
    return row


def run_bench(target: str, options: BenchOptions) -> dict:
    load = load_average()  # before any work of ours: what else this machine was running
    others = OtherWork()  # and while we measure
    bundle_dir = Path(target)
    if not bundle_dir.is_dir():
        from edgecls.export.pipeline import ExportOptions, export_bundle

        bundle_dir = Path(f"exports/{target}")
        export_bundle(target, ExportOptions(fp16=True, int8=True, out=str(bundle_dir), data_dir=options.data_dir))
    bundle = Bundle.open(bundle_dir, public_key=options.public_key)
    test = _load_test(bundle, options)
    images = Preprocessor(bundle.input, bundle.preprocess).batch_from_images(test.images)
    crop_fraction = bundle.preprocess.crop_fraction
    frame = ReplaySource(
        test.images[:1], test.labels[:1], parse_size(options.frame_size), crop_fraction=crop_fraction
    ).read()[0]
    names = list(options.backends or available_backends())
    if "torch" in names:  # the baseline goes first, so every later row has its ratio
        names.remove("torch")
        names.insert(0, "torch")

    host = host_info()
    rows = _measure_all(bundle, names, frame, images, test.labels, options, host)
    other_cores = others.cores()
    busy = busy_notes(load, other_cores, host["logical_cores"] or 1)
    notes = busy + _add_ratios(rows, has_baseline=bundle.find("pytorch", "fp32") is not None, busy=bool(busy))
    notes += _cpu_notes(rows)
    result = {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "bundle": str(bundle_dir),
        "model": bundle.manifest.model,
        "host": host,
        "load_1m_before": load,
        "other_cores_busy_during": None if other_cores is None else round(other_cores, 2),
        "dataset": test.name,
        "samples": len(test),
        "frame_size": options.frame_size,
        "pace_ms": options.pace_ms,
        "iterations": options.iterations,
        "throughput_batch": options.throughput_batch,
        "latency": "batch 1; end_to_end_ms = preprocess of the camera-sized BGR frame + inference + postprocess; "
        "inference_ms = the backend call alone",
        "rows": rows,
        "notes": notes,
    }
    measured = [r for r in rows if "skipped" not in r]
    _print(result, measured)
    if not measured:
        raise EdgeclsError(
            f"nothing was measured: every requested backend was skipped ({'; '.join(r['skipped'] for r in rows)})"
        )
    if options.json_path:
        _write(result, measured, Path(options.json_path), busy)
    return result


def _measure_all(
    bundle: Bundle, names: list[str], frame, images, labels, options: BenchOptions, host: dict
) -> list[dict]:
    """One row per backend × precision × variant: measured, or skipped with the reason (never for a tampered bundle)."""
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
                label = f"{name}/{variant['device']} {precision}" + (
                    f" {variant['flavour']}" if variant.get("flavour") else ""
                )
                try:
                    backend = cls(bundle, precision=precision, threads=options.threads, **variant)
                except (IntegrityError, SignatureError):
                    raise  # a tampered bundle is no backend to skip: nothing of it may be measured or reported
                except (EdgeclsError, ImportError) as exc:
                    rows.append({"backend": name, "precision": precision, **variant, "skipped": str(exc)})
                    console.print(f"[yellow]skip[/] {label}: {escape(str(exc))}")
                    continue
                console.print(f"timing {label} (hot, then one call every {options.pace_ms:g} ms) …")
                info = backend.describe()
                rows.append(
                    {
                        "backend": name,
                        "device": info.device,
                        "precision": precision,
                        "flavour": variant.get("flavour") or "",
                        "threads": info.threads,
                        "file": info.file,
                        "providers": list(info.providers),
                        "mb": round(sizes[info.file] / 1e6, 3) if info.file in sizes else None,
                        "host": host,
                        **_measure(backend, bundle, frame, images, labels, options),
                    }
                )
    return rows


def busy_notes(load: float | None, other_cores: float | None, cores: int) -> list[str]:
    """Why this machine was too busy for fair ratios: a load above its cores before the bench, or other processes
    keeping more than BUSY_OTHER_CORES of a core busy while it ran (work of ours then waits for a core)."""
    reasons = []
    if load is not None and load > cores:
        reasons.append(f"1-minute load {load:g} on {cores} cores before it began")
    if other_cores is not None and other_cores > BUSY_OTHER_CORES:
        reasons.append(f"other processes kept {other_cores:.1f} of {cores} cores busy while it ran")
    if not reasons:
        return []
    return [
        f"the machine was busy ({'; '.join(reasons)}): every latency includes waiting for a core, so no ratios "
        "are given; run it on a quiet machine"
    ]


def _add_ratios(rows: list[dict], has_baseline: bool = True, busy: bool = False) -> list[str]:
    """`speedup_vs_torch_fp32[mode.part]` = baseline p50 / row p50, only where the baseline measurement is stable and
    the machine was not busy."""
    notes = []
    if not has_baseline:  # said whether or not the machine was busy: it is a property of the bundle
        return [
            "no PyTorch baseline: this bundle's source is a model edgecls did not train (an ONNX file or your own "
            "module), so the bundle holds no model.pt and no ratios are given"
        ]
    if busy:
        return notes
    base = next((r for r in rows if r["backend"] == "torch" and r["precision"] == "fp32" and "skipped" not in r), None)
    if base is None:
        return ["no PyTorch FP32 row: no ratios"]
    for key in base["unstable"]:
        notes.append(
            f"PyTorch FP32 {key} is unstable (p99 > {UNSTABLE_P99_OVER_P50:g}× p50, or hot p50 > "
            f"{SLOW_P50_OVER_MIN:g}× min): no ratios against it"
        )
    for r in rows:
        if "skipped" in r:
            continue
        r["speedup_vs_torch_fp32"] = {
            f"{mode}.{part}": base[mode][part]["p50"] / r[mode][part]["p50"]
            for mode in MODES
            for part in PARTS
            if f"{mode}.{part}" not in base["unstable"]
        }
        r["throughput_vs_torch_fp32"] = r["throughput_ips"] / base["throughput_ips"]
    return notes


def _cpu_notes(rows: list[dict]) -> list[str]:
    """Rows whose paced calls cost far more CPU than their latency: threads spinning between frames."""
    notes = []
    for r in rows:
        if "skipped" in r:
            continue
        cpu, latency = r["paced"]["cpu_ms_per_call"], r["paced"]["end_to_end_ms"]["p50"]
        if cpu > CPU_OVER_LATENCY * latency:
            notes.append(
                f"{r['backend']} {r['precision']} spends {cpu:.1f} ms of CPU per paced frame, {cpu / latency:.0f}× its "
                f"{latency:.2f} ms latency: its threads spin between frames, taking cores from the robot's other work"
            )
    return notes


HEADER = [
    "backend",
    "precision",
    "threads",
    "top-1",
    "hot inference p50/p99 ms",
    "hot end-to-end p50/p99 ms",
    "paced inference p50/p99 ms",
    "paced end-to-end p50/p99 ms",
    "paced CPU ms/frame",
    "× torch hot",
    "× torch paced",
    "img/s",
    "MB",
    "unstable",
]


def _row_cells(r: dict) -> list[str]:
    def pair(mode: str, part: str) -> str:
        return f"{r[mode][part]['p50']:.3f} / {r[mode][part]['p99']:.3f}"

    def ratio(key: str) -> str:
        value = r.get("speedup_vs_torch_fp32", {}).get(key)
        return f"{value:.2f}×" if value is not None else "—"

    flavour = f" {r['flavour']}" if r["flavour"] and r["flavour"] != "fp16-io32" else ""
    return [
        f"{r['backend']}/{r['device']}",
        r["precision"] + flavour,
        str(r["threads"] or "—"),
        f"{r['top1']:.2%}",
        pair("hot", "inference_ms"),
        pair("hot", "end_to_end_ms"),
        pair("paced", "inference_ms"),
        pair("paced", "end_to_end_ms"),
        f"{r['paced']['cpu_ms_per_call']:.2f}",
        ratio("hot.end_to_end_ms"),
        ratio("paced.end_to_end_ms"),
        f"{r['throughput_ips']:,.0f}",
        f"{r['mb']:.2f}" if r["mb"] else "—",
        ", ".join(r["unstable"]) or "—",
    ]


def _print(result: dict, measured: list[dict]) -> None:
    host = result["host"]
    table = Table(
        title=f"bench {result['model']}: {result['dataset']} ({result['samples']} images); batch-1 latency from a "
        f"{result['frame_size']} frame, hot and paced every {result['pace_ms']:g} ms; img/s at batch "
        f"{result['throughput_batch']}; {host['cpu']}, {host['logical_cores']} cores"
    )
    for col in HEADER:
        table.add_column(col)
    for r in measured:
        table.add_row(*_row_cells(r))
    console.print(table)
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {escape(note)}")


def _write(result: dict, measured: list[dict], path: Path, busy: list[str] = ()) -> None:
    """The JSON, the table as Markdown with the host and every note under it, and the picture, whose title carries
    the host and the busy-machine note: the files that get shared say what the terminal said."""
    from edgecls.plots import missing, scatter

    atomic_write_json(path, result)
    host = result["host"]
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(_row_cells(r)) + " |" for r in measured]
    lines += ["", f"Host: {host['cpu']}, {host['logical_cores']} cores; {result['created']}."]
    lines += [f"- {note}" for note in result["notes"]]
    atomic_write_bytes(path.with_suffix(".md"), ("\n".join(lines) + "\n").encode())
    no_png = missing()
    if no_png:
        console.print(f"wrote {path} and {path.with_suffix('.md')}; {no_png}")
        return
    x = "paced end-to-end ms (dot p50, bar to p99; hollow: unstable)"
    points = [
        {
            x: r["paced"]["end_to_end_ms"]["p50"],
            "p99": r["paced"]["end_to_end_ms"]["p99"],
            "top-1 (%)": 100 * r["top1"],
            "name": f"{r['backend']} {r['precision']} {r['flavour'] or ''}".strip(),
            "unstable": bool(r["unstable"]),
        }
        for r in measured
    ]
    scatter(
        points,
        x,
        "top-1 (%)",
        "name",
        path.with_suffix(".png"),
        f"{result['model']}: accuracy vs batch-1 latency from a {result['frame_size']} frame, paced every "
        f"{result['pace_ms']:g} ms\n{host['cpu']}, {host['logical_cores']} cores"
        + "".join(f"\n{textwrap.fill(note, 90)}" for note in busy),
        min_y_span=2.0,
        x_high="p99",
    )
    for suffix in (".json", ".md", ".png"):
        console.print(f"wrote {path.with_suffix(suffix)}")
