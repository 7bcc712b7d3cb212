import json

from edgecls.bench import BenchOptions, run_bench


def test_bench_times_every_backend_and_precision_against_torch(bundle_dir, cifar_root, tmp_path):
    out = tmp_path / "bench.json"
    rows = run_bench(str(bundle_dir), BenchOptions(iterations=20, warmup=3, data_dir=str(cifar_root), json_path=str(out),
                                                   throughput_batch=16))
    measured = {(r["backend"], r["precision"], r.get("flavour", "")) for r in rows if "skipped" not in r}
    assert {("torch", "fp32", ""), ("onnxruntime", "fp32", ""), ("onnxruntime", "fp16", "fp16-io32"),
            ("onnxruntime", "int8", "u8s8"), ("onnxruntime", "int8", "s8s8")} <= measured
    base = next(r for r in rows if r["backend"] == "torch")
    assert base["speedup_p50_vs_torch_fp32"] == 1.0
    for r in rows:
        if "skipped" not in r:
            lat = r["latency_ms"]
            assert lat["n"] == 20 and lat["p50"] <= lat["p90"] <= lat["p99"]
            assert r["throughput_ips"] > 0 and 0.8 <= r["top1"] <= 1.0
    saved = json.loads(out.read_text())
    assert saved["samples"] == 200 and len(saved["rows"]) == len(rows)
    assert out.with_suffix(".md").read_text().startswith("| backend |")
    assert out.with_suffix(".png").stat().st_size > 0
