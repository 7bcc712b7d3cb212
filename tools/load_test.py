"""Load test an `edgecls serve` server: N concurrent clients × M requests, and a soak at a fixed rate.

    python tools/load_test.py exports/mobilenet_mod --clients 8 --requests 500 --soak-s 60 --soak-rate 100

Starts the server itself (`edgecls serve` in a child process, on free localhost ports), sends real test
images as camera-sized frames (RemoteClassifier, one Triton client per thread), and measures in the same run
the baseline: the same N threads calling an in-process `Classifier`. Prints req/s, p50/p99 latency, failed
requests and whether every remote top-1 equals the in-process top-1, for raw frames over HTTP and for frames
preprocessed by the client (the model input sent to `<model>_tensor`) over HTTP and gRPC; the soak reports its error
count and the
server's memory (resident set of the server process tree) before and after. Writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from edgecls.runtime import Classifier, RemoteClassifier
from edgecls.runtime.sources import ReplaySource


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_server(bundle: str, model: str, ports: list[int], extra: list[str], **popen) -> subprocess.Popen:
    """`edgecls serve` in a child process (`popen`: more Popen arguments), returned once both its models answer
    readiness probes."""
    http, grpc, metrics = ports
    cmd = [
        sys.executable,
        "-m",
        "edgecls",
        "serve",
        bundle,
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        *extra,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"edgecls serve exited with {proc.returncode}:\n{proc.stdout.read()[-3000:]}")
        try:
            if all(
                urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/{name}/ready", timeout=1).status == 200
                for name in (model, f"{model}_tensor")
            ):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("edgecls serve did not become ready in 120 s")


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (the server: Python proxy + tritonserver + stubs)."""
    children = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(status.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
        todo.extend(children.get(p, []))
    return total / 2**20


def run_clients(predict_for_thread, frames: list[np.ndarray], clients: int, requests: int) -> dict:
    """`clients` threads × `requests` calls each; returns throughput, latency percentiles, errors and top-1s."""
    latencies, errors, top1 = [[] for _ in range(clients)], [0] * clients, {}
    barrier = threading.Barrier(clients + 1)

    def work(c: int) -> None:
        predict = predict_for_thread()
        barrier.wait()
        for r in range(requests):
            i = (c * requests + r) % len(frames)
            t0 = time.perf_counter()
            try:
                top1[(c, r)] = (i, predict(frames[i]).index)
            except Exception:
                errors[c] += 1
            latencies[c].append((time.perf_counter() - t0) * 1e3)

    threads = [threading.Thread(target=work, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    started = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    lat = np.concatenate([np.asarray(x) for x in latencies])
    return {
        "requests": clients * requests,
        "wall_s": wall,
        "req_per_s": clients * requests / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "failed": sum(errors),
        "top1": {i: idx for i, idx in top1.values()},
    }


def soak(predict, frames: list[np.ndarray], rate: float, seconds: float) -> dict:
    """One request every 1/rate s for `seconds`, on schedule (a late request does not shift the next)."""
    sent = failed = 0
    start = time.perf_counter()
    latencies = []
    while (due := start + sent / rate) < start + seconds:
        time.sleep(max(0.0, due - time.perf_counter()))
        t0 = time.perf_counter()
        try:
            predict(frames[sent % len(frames)])
        except Exception:
            failed += 1
        latencies.append((time.perf_counter() - t0) * 1e3)
        sent += 1
    return {
        "requests": sent,
        "failed": failed,
        "rate_per_s": rate,
        "seconds": seconds,
        "p50_ms": float(np.percentile(latencies, 50)),
        "p99_ms": float(np.percentile(latencies, 99)),
    }


def test_frames(clf: Classifier, data_dir: str | None, n: int, frame_size: tuple[int, int]) -> list[np.ndarray]:
    """Test images as camera frames, placed as replay places them (the bundle's labelled sample without a dataset)."""
    sample = np.load(clf.bundle.root / "sample.npz")
    images, labels = sample["images"], sample["labels"]
    if data_dir:
        from edgecls.data import load_for_model

        test = load_for_model(
            clf.bundle.manifest.dataset or "cifar10", "test", data_dir, clf.bundle.input, clf.bundle.preprocess
        )
        images, labels = test.images, test.labels
    replay = ReplaySource(images[:n], labels[:n], frame_size, crop_fraction=clf.bundle.preprocess.crop_fraction)
    return [replay.read()[0] for _ in range(min(n, len(images)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500, help="per client")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--frame-size", default="640x480")
    parser.add_argument(
        "--data-dir", default=None, help="test set to draw frames from (default: the bundle's sample.npz)"
    )
    parser.add_argument("--soak-s", type=float, default=0.0)
    parser.add_argument("--soak-rate", type=float, default=100.0)
    parser.add_argument("--serve-args", default="", help="extra `edgecls serve` options, e.g. '--instances 2'")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    local = Classifier.load(args.bundle)
    frames = test_frames(local, args.data_dir, args.images, tuple(int(v) for v in args.frame_size.split("x")))
    ports = free_ports(3)
    server = start_server(args.bundle, local.bundle.manifest.model, ports, args.serve_args.split())
    try:
        url = f"http://127.0.0.1:{ports[0]}"
        remote = RemoteClassifier(url, local.bundle.manifest.model, deadline_s=10.0)
        remote.predict(frames[0])  # connect and warm up
        result = {
            "bundle": args.bundle,
            "backend": local.describe(),
            "clients": args.clients,
            "requests_per_client": args.requests,
            "frame_size": args.frame_size,
            "host_cpus": os.cpu_count(),
        }
        result["in_process"] = run_clients(lambda: local.predict, frames, args.clients, args.requests)
        result["remote"] = run_clients(lambda: remote.predict, frames, args.clients, args.requests)
        for protocol, port in (("http", ports[0]), ("grpc", ports[1])):  # preprocessed here, the model's input sent
            client_side = RemoteClassifier(
                f"{protocol}://127.0.0.1:{port}",
                local.bundle.manifest.model,
                deadline_s=10.0,
                preprocess_with=args.bundle,
            )
            client_side.predict(frames[0])
            result[f"remote_{protocol}_client_preprocessed"] = run_clients(
                lambda c=client_side: c.predict, frames, args.clients, args.requests
            )
        a = result["in_process"].pop("top1")
        remotes = [name for name in result if name.startswith("remote")]
        result["identical_top1"] = {}
        for name in remotes:
            b = result[name].pop("top1")
            result["identical_top1"][name] = {"compared": len(b), "equal": sum(b[i] == a[i] for i in b)}
            result[name]["ratio_vs_in_process"] = result[name]["req_per_s"] / result["in_process"]["req_per_s"]
        for name in ("in_process", *remotes):
            r = result[name]
            same = result["identical_top1"].get(name)
            print(
                f"{name:34s} {r['requests']} requests from {args.clients} clients: {r['req_per_s']:.0f} req/s"
                + (f" ({r['ratio_vs_in_process']:.2f}× in-process)" if "ratio_vs_in_process" in r else "")
                + f", p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, failed {r['failed']}"
                + (f", identical top-1 {same['equal']}/{same['compared']}" if same else ""),
                flush=True,
            )
        if args.soak_s:
            before = tree_rss_mb(server.pid)
            result["soak"] = soak(remote.predict, frames, args.soak_rate, args.soak_s)
            result["soak"].update(server_rss_mb_before=before, server_rss_mb_after=tree_rss_mb(server.pid))
            s = result["soak"]
            print(
                f"soak {s['seconds']:.0f} s at {s['rate_per_s']:.0f} req/s: {s['requests']} requests, {s['failed']} "
                "failed, "
                f"p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms; server memory {s['server_rss_mb_before']:.0f} → "
                f"{s['server_rss_mb_after']:.0f} MB",
                flush=True,
            )
    finally:
        server.terminate()
        server.wait(timeout=60)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
