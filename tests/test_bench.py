import json
import time

import numpy as np
import pytest

from edgecls.bench import BenchOptions, _add_ratios, run_bench, time_frames
from edgecls.errors import ConfigError, EdgeclsError
from edgecls.runtime import Classifier


def test_bench_times_every_backend_hot_and_paced_from_a_camera_frame(bundle_dir, cifar_root, tmp_path):
    out = tmp_path / "bench.json"
    result = run_bench(
        str(bundle_dir),
        BenchOptions(
            iterations=12,
            warmup=3,
            pace_ms=5.0,
            data_dir=str(cifar_root),
            json_path=str(out),
            throughput_batch=16,
            threads=1,
        ),
    )
    rows = [r for r in result["rows"] if "skipped" not in r]
    measured = {(r["backend"], r["precision"], r.get("flavour", "")) for r in rows}
    assert {
        ("torch", "fp32", ""),
        ("onnxruntime", "fp32", ""),
        ("onnxruntime", "fp16", "fp16-io32"),
        ("onnxruntime", "int8", "u8s8"),
    } <= measured
    assert not any(r.get("flavour") == "modelopt" for r in rows), "TensorRT's graph is not timed under ONNX Runtime"
    for r in rows:
        assert r["threads"] == 1 and r["host"]["cpu"] and r["host"]["versions"]["onnxruntime"]
        for mode in ("hot", "paced"):
            assert r[mode]["end_to_end_ms"]["n"] == r[mode]["inference_ms"]["n"] == 12
            # end to end includes preprocessing a 640×480 frame, so it is never shorter than inference alone
            assert r[mode]["end_to_end_ms"]["min"] >= r[mode]["inference_ms"]["min"]
            assert r[mode]["cpu_ms_per_call"] > 0
    saved = json.loads(out.read_text())
    assert saved["schema"] == "edgecls.bench/2" and saved["samples"] == 200 and saved["frame_size"] == "640x480"
    assert out.with_suffix(".md").read_text().startswith("| backend |")
    assert out.with_suffix(".png").stat().st_size > 0


def test_paced_calls_are_spaced_like_a_camera(bundle_dir):
    clf = Classifier.load(bundle_dir, backend="onnxruntime", precision="fp32", device="cpu")
    frame = np.zeros((480, 640, 3), np.uint8)
    start = time.perf_counter()
    time_frames(clf, frame, iterations=6, warmup=0, pace_ms=25.0)
    assert time.perf_counter() - start >= 6 * 0.025


def test_cpu_time_per_frame_counts_what_threads_burn_between_paced_calls(monkeypatch):
    """Threads that spin while the loop sleeps are as fast as quiet ones but burn a core: CPU time per paced call is
    taken over the whole loop, waits included, and the bench names the row whose CPU time far exceeds its latency.
    The CPU clock is simulated (spinning = CPU time advancing while the loop sleeps), so the test does not depend on
    how a loaded machine schedules a real spinning thread."""
    from edgecls.bench import _cpu_notes

    class Quick:
        def predict(self, frame):
            return type("P", (), {"timings_ms": {"inference": 0.01}})()

    cpu = {"s": 0.0, "spinning": False}
    real_sleep = time.sleep

    def sleep(seconds):
        cpu["s"] += seconds if cpu["spinning"] else 0.0
        real_sleep(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(time, "process_time", lambda: cpu["s"])
    quiet = time_frames(Quick(), None, iterations=10, warmup=0, pace_ms=20.0)
    cpu["spinning"] = True
    spinning = time_frames(Quick(), None, iterations=10, warmup=0, pace_ms=20.0)
    assert quiet["cpu_ms_per_call"] == 0 and spinning["cpu_ms_per_call"] > 10
    rows = [
        {
            "backend": b,
            "precision": "fp32",
            "paced": {
                "cpu_ms_per_call": r["cpu_ms_per_call"],
                "end_to_end_ms": {"p50": float(np.median(r["end_to_end_ms"]))},
            },
        }
        for b, r in (("quiet", quiet), ("spinning", spinning))
    ]
    notes = _cpu_notes(rows)
    assert len(notes) == 1 and notes[0].startswith("spinning fp32 spends") and "spin between frames" in notes[0]


def _row(backend: str, p50: float, p99: float) -> dict:
    stats = {"p50": p50, "p99": p99}
    row = {"backend": backend, "precision": "fp32", "throughput_ips": 100.0 / p50}
    row.update({mode: {"end_to_end_ms": stats, "inference_ms": stats} for mode in ("hot", "paced")})
    row["unstable"] = (
        [f"{m}.{p}" for m in ("hot", "paced") for p in ("end_to_end_ms", "inference_ms")] if p99 > 5 * p50 else []
    )
    return row


def test_ratios_are_against_the_torch_row_and_withheld_when_it_is_unstable():
    rows = [_row("torch", 2.0, 3.0), _row("onnxruntime", 0.5, 0.6)]
    assert _add_ratios(rows) == []
    assert rows[1]["speedup_vs_torch_fp32"]["paced.end_to_end_ms"] == pytest.approx(4.0)
    assert rows[1]["throughput_vs_torch_fp32"] == pytest.approx(4.0)
    rows = [_row("torch", 2.6, 493.0), _row("onnxruntime", 0.5, 0.6)]
    notes = _add_ratios(rows)
    assert len(notes) == 4 and "unstable" in notes[0]
    assert rows[1]["speedup_vs_torch_fp32"] == {}


def test_threads_reach_every_cpu_backend(bundle_dir):
    import torch

    before = torch.get_num_threads()
    try:
        for backend in ("onnxruntime", "torch"):
            for threads in (1, 2):
                clf = Classifier.load(bundle_dir, backend=backend, precision="fp32", device="cpu", threads=threads)
                # what the engine itself runs with, not the number the backend was given
                running = (
                    clf.backend.session.get_session_options().intra_op_num_threads
                    if backend == "onnxruntime"
                    else torch.get_num_threads()
                )
                assert running == clf.info.threads == threads
        # the measured batch-1 defaults (docs/latency.md, "Threads"): one thread for every precision and backend
        torch.set_num_threads(2)
        assert Classifier.load(bundle_dir, backend="torch", precision="fp32", device="cpu").info.threads == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    for precision in ("fp32", "fp16", "int8"):
        assert Classifier.load(bundle_dir, backend="onnxruntime", precision=precision, device="cpu").info.threads == 1


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_default_classifier_burns_no_core_between_paced_frames(bundle_dir, precision):
    """ONNX Runtime's own pool spins between calls (measured: 34 ms of CPU per 33 ms frame on 2 cores); the default
    must not. CPU time per call, waits included, stays well under the pacing interval."""
    clf = Classifier.load(bundle_dir, backend="onnxruntime", precision=precision, device="cpu")
    paced = time_frames(clf, np.zeros((480, 640, 3), np.uint8), iterations=15, warmup=3, pace_ms=20.0)
    assert paced["cpu_ms_per_call"] < 10.0


def test_bench_with_nothing_measured_fails_and_bad_options_are_refused(bundle_dir, cifar_root):
    with pytest.raises(EdgeclsError, match="nothing was measured"):
        run_bench(str(bundle_dir), BenchOptions(backends=("torch",), precisions=("int8",), data_dir=str(cifar_root)))
    with pytest.raises(ConfigError, match="iterations"):
        BenchOptions(iterations=0)


def test_a_run_slow_throughout_is_unstable_and_a_busy_machine_gets_no_ratios():
    from edgecls.bench import is_unstable

    assert is_unstable({"p50": 461.5, "p99": 500.0, "min": 18.0})  # the busy-machine torch row
    assert not is_unstable({"p50": 4.7, "p99": 6.0, "min": 4.1})
    rows = [_row("torch", 2.0, 3.0), _row("onnxruntime", 0.5, 0.6)]
    assert _add_ratios(rows, busy=True) == [] and "speedup_vs_torch_fp32" not in rows[1]
    assert "no PyTorch baseline" in _add_ratios(rows, has_baseline=False, busy=True)[0]  # busy or not, it has none


def _short_bench(bundle_dir, cifar_root) -> dict:
    """ONNX Runtime and its PyTorch baseline, FP32, a few calls each: enough for the busy-machine verdict."""
    options = BenchOptions(
        backends=("onnxruntime", "torch"),
        precisions=("fp32",),
        iterations=20,
        warmup=2,
        pace_ms=5.0,
        throughput_batch=4,
        data_dir=str(cifar_root),
        eval_images=20,
    )
    return run_bench(str(bundle_dir), options)


def test_bench_says_the_machine_was_busy_and_withholds_ratios(bundle_dir, cifar_root, monkeypatch):
    from edgecls import bench

    monkeypatch.setattr(bench, "load_average", lambda: 11.5)
    result = _short_bench(bundle_dir, cifar_root)
    assert result["load_1m_before"] == 11.5 and "busy" in result["notes"][0]
    assert all("speedup_vs_torch_fp32" not in r for r in result["rows"])


def test_bench_beside_a_real_cpu_hog_warns_and_gives_no_ratios(bundle_dir, cifar_root):
    """Two processes spinning on the CPU while the bench runs: what the rest of the machine did is measured during
    the run (the load average trails by a minute, so a hog started just before would pass unseen)."""
    import subprocess
    import sys

    from edgecls import bench

    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        result = _short_bench(bundle_dir, cifar_root)
    finally:
        for hog in hogs:
            hog.kill()
    assert result["other_cores_busy_during"] > bench.BUSY_OTHER_CORES
    assert "other processes kept" in result["notes"][0] and "no ratios" in result["notes"][0]
    assert all("speedup_vs_torch_fp32" not in r for r in result["rows"])


def test_bench_md_and_png_carry_the_host_and_the_busy_machine_note(tmp_path, monkeypatch):
    """The terminal said "the machine was busy, no ratios"; bench.md and bench.png, which get shared, did not."""
    from edgecls import bench, plots

    titles = []
    monkeypatch.setattr(plots, "scatter", lambda *args, **kwargs: titles.append(args[5]))
    busy = bench.busy_notes(11.5, None, 2)
    row = {**_row("onnxruntime", 0.5, 0.6), "top1": 0.9, "unstable": False, "flavour": ""}
    result = {
        "host": {"cpu": "AMD EPYC test", "logical_cores": 2},
        "created": "2026-12-06T00:00:00+00:00",
        "notes": busy,
        "model": "m",
        "frame_size": "640x480",
        "pace_ms": 33.0,
    }
    monkeypatch.setattr(bench, "_row_cells", lambda r: ["x"] * len(bench.HEADER))
    bench._write(result, [row], tmp_path / "bench.json", busy)
    md = (tmp_path / "bench.md").read_text()
    assert "AMD EPYC test, 2 cores" in md and busy[0] in md
    assert "AMD EPYC test" in titles[0] and "the machine was busy" in titles[0]


def test_the_scatter_names_points_in_a_legend_never_over_each_other(tmp_path, monkeypatch):
    """Two bench rows at the same latency and accuracy printed their labels over each other."""
    from edgecls import plots

    figures = []
    monkeypatch.setattr(plots, "save_png", lambda fig, path: figures.append(fig))
    points = [{"ms": 5.0, "top1": 83.6, "name": "onnxruntime int8"}, {"ms": 5.0, "top1": 83.6, "name": "torch fp32"}]
    plots.scatter(points, "ms", "top1", "name", tmp_path / "s.png", "t")
    ax = figures[0].axes[0]
    assert not ax.texts
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["onnxruntime int8", "torch fp32"]
