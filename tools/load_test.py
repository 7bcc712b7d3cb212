"""Load test an `edgecls serve` server against two baselines: N concurrent clients × M requests, and a soak.

    python tools/load_test.py exports/mobilenet_mod --clients 8 --requests 500 --repeats 3 --soak-s 60

Starts the servers itself (child processes on free localhost ports) and sends real test images as camera-sized
frames, one Triton client per thread. Paths, measured in interleaved rounds (`--repeats`):
- `in_process`: the same N threads calling an in-process `Classifier` (the baseline of every ratio);
- `remote`: raw frames over HTTP (`RemoteClassifier`, preprocessed on the server);
- `remote_{http,grpc}_client_preprocessed`: frames preprocessed by the client, the model input sent to `<model>_tensor`;
- `tensor_{http,grpc}_plain_client`: the plain server's client (preprocess, send, argmax) against `<model>_tensor`;
- `plain_pytriton_{http,grpc}`: the same tensors sent to `tools/plain_pytriton_server.py`, a plain PyTriton server
  running the same graph with ONNX Runtime's defaults (skip with --no-plain).
Prints each path's median req/s with every round's figure, p50/p99 latency, failed requests, the CPU time per
request of the clients' process and of the server's process tree with the share of the cores busy, whether every
top-1 equals the in-process top-1, and `<model>_tensor` against the plain server per protocol, reached by the plain
server's own client (the servers compared) and by `RemoteClassifier` (median and spread of the per-round ratios).
A paced run (`--paced-s`, one client-preprocessed gRPC client at `--paced-rate` requests a second) reports the
server's CPU time per request at a camera's pace, where a spinning thread pool shows. The soak reports its error
count and the server's memory (resident set of the server process tree) before and after. Writes JSON with --json.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edgecls.camera.sources import ReplaySource
from edgecls.runtime import Classifier
from edgecls.serving import RemoteClassifier


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
    wait_ready(proc, http, [model, f"{model}_tensor"])
    return proc


def wait_ready(proc: subprocess.Popen, http_port: int, models: list[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[:3]} exited with {proc.returncode}:\n{proc.stdout.read()[-3000:]}")
        try:
            if all(
                urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v2/models/{name}/ready", timeout=1).status == 200
                for name in models
            ):
                return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"{proc.args[:3]} did not become ready in {timeout_s:.0f} s")


def process_tree(pid: int) -> list[int]:
    """A process and all its descendants (the server: Python proxy + tritonserver + Python-backend stubs)."""
    children = {}
    for status in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = status.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(status.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    return tree


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process tree."""
    total = 0
    for p in process_tree(pid):
        try:
            total += int(Path(f"/proc/{p}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total / 2**20


def tree_cpu_s(pid: int) -> float:
    """CPU time (user + system, all threads) spent so far by a process tree's living members."""
    total = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total / os.sysconf("SC_CLK_TCK")


def busy_cores() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK"), sum(ticks) / os.sysconf("SC_CLK_TCK")


def run_clients(
    predict_for_thread, frames: list[np.ndarray], clients: int, requests: int, server_pid: int | None = None
) -> dict:
    """`clients` threads × `requests` calls each; returns throughput, latency percentiles, errors, top-1s, and the CPU
    time per request of this process (the clients, and the in-process Classifier) and of the server's process tree,
    with the share of the machine's cores busy meanwhile."""
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
    started, client_cpu, machine = time.perf_counter(), time.process_time(), busy_cores()
    server_cpu = tree_cpu_s(server_pid) if server_pid else 0.0
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    server_cpu = tree_cpu_s(server_pid) - server_cpu if server_pid else 0.0
    busy, total = (after - before for after, before in zip(busy_cores(), machine, strict=True))
    lat = np.concatenate([np.asarray(x) for x in latencies])
    return {
        "requests": clients * requests,
        "wall_s": wall,
        "req_per_s": clients * requests / wall,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "failed": sum(errors),
        "client_cpu_ms_per_request": client_cpu * 1e3 / (clients * requests),
        "server_cpu_ms_per_request": server_cpu * 1e3 / (clients * requests),
        "cores_busy": busy / total if total else 0.0,
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


def paced(remote: RemoteClassifier, frames: list[np.ndarray], rate: float, seconds: float, server_pid: int) -> dict:
    """One client at a camera's pace: the server's CPU time per request between frames, where a spinning thread
    pool shows (it is hidden under load, when its threads have work)."""
    remote.predict(frames[0])
    before = tree_cpu_s(server_pid)
    result = soak(remote.predict, frames, rate, seconds)
    result["server_cpu_ms_per_request"] = (tree_cpu_s(server_pid) - before) * 1e3 / result["requests"]
    print(
        f"paced {result['seconds']:.0f} s at {result['rate_per_s']:.0f} req/s, one client-preprocessed gRPC client: "
        f"server CPU {result['server_cpu_ms_per_request']:.2f} ms/request, p50 {result['p50_ms']:.2f} ms, "
        f"p99 {result['p99_ms']:.2f} ms, failed {result['failed']}",
        flush=True,
    )
    return result


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


def start_plain_server(bundle: str, ports: list[int]) -> subprocess.Popen:
    """tools/plain_pytriton_server.py in a child process, returned once its model answers readiness probes."""
    http, grpc, metrics = ports
    script = Path(__file__).with_name("plain_pytriton_server.py")
    cmd = [sys.executable, str(script), bundle, "--http-port", str(http), "--grpc-port", str(grpc)]
    proc = subprocess.Popen(
        [*cmd, "--metrics-port", str(metrics)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    wait_ready(proc, http, ["plain"])
    return proc


def plain_predictor(url: str, preprocess_batch, model: str = "plain"):
    """What a plain client of the plain server does: preprocess here, send the tensor, argmax the logits. Pointed at
    `<model>_tensor`, the same client measures edgecls' server against the plain one, client work equal."""
    scheme, _, address = url.partition("://")
    api = importlib.import_module(f"tritonclient.{scheme}")
    client = api.InferenceServerClient(address)
    outputs = [api.InferRequestedOutput("logits")]

    def predict(frame: np.ndarray) -> SimpleNamespace:
        batch = preprocess_batch([frame])
        tensor = api.InferInput("input", list(batch.shape), "FP32")
        tensor.set_data_from_numpy(batch)
        logits = client.infer(model, [tensor], outputs=outputs).as_numpy("logits")
        return SimpleNamespace(index=int(logits[0].argmax()))

    return predict


def summarize(runs: list[dict]) -> dict:
    """Repeated runs of one path → the median run's figures, the req/s of every run, and all runs' top-1s."""
    rates = [r["req_per_s"] for r in runs]
    median = sorted(runs, key=lambda r: r["req_per_s"])[len(runs) // 2]
    top1 = {}
    for r in runs:
        top1.update(r["top1"])
    return {**{k: v for k, v in median.items() if k != "top1"}, "req_per_s_runs": rates, "top1": top1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=500, help="per client")
    parser.add_argument("--repeats", type=int, default=3, help="rounds over every path, interleaved")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--frame-size", default="640x480")
    parser.add_argument(
        "--data-dir", default=None, help="test set to draw frames from (default: the bundle's sample.npz)"
    )
    parser.add_argument("--no-plain", action="store_true", help="skip the plain PyTriton baseline server")
    parser.add_argument("--soak-s", type=float, default=0.0)
    parser.add_argument("--soak-rate", type=float, default=100.0)
    parser.add_argument(
        "--paced-s", type=float, default=20.0, help="seconds of requests at a camera's pace, one client (0: skip)"
    )
    parser.add_argument("--paced-rate", type=float, default=30.0)
    parser.add_argument("--serve-args", default="", help="extra `edgecls serve` options, e.g. '--instances 2'")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    local = Classifier.load(args.bundle)
    model = local.bundle.manifest.model
    frames = test_frames(local, args.data_dir, args.images, tuple(int(v) for v in args.frame_size.split("x")))
    ports, plain_ports = free_ports(3), free_ports(3)
    servers = [start_server(args.bundle, model, ports, args.serve_args.split())]
    try:
        if not args.no_plain:
            servers.append(start_plain_server(args.bundle, plain_ports))
        http, grpc = f"http://127.0.0.1:{ports[0]}", f"grpc://127.0.0.1:{ports[1]}"
        remote = RemoteClassifier(http, model, deadline_s=10.0)
        paths = {
            "in_process": lambda: local.predict,
            "remote": lambda: remote.predict,
            **{
                f"remote_{url[:4]}_client_preprocessed": (
                    lambda u=url: RemoteClassifier(u, model, deadline_s=10.0, preprocess_with=args.bundle).predict
                )
                for url in (http, grpc)
            },
        }
        if not args.no_plain:
            for url in (http, grpc):
                paths[f"tensor_{url[:4]}_plain_client"] = lambda u=url: plain_predictor(
                    u, local.preprocess_batch, f"{model}_tensor"
                )
            for url in (f"http://127.0.0.1:{plain_ports[0]}", f"grpc://127.0.0.1:{plain_ports[1]}"):
                paths[f"plain_pytriton_{url[:4]}"] = lambda u=url: plain_predictor(u, local.preprocess_batch)
        for make in paths.values():
            make()(frames[0])  # connect and warm up
        result = {
            "bundle": args.bundle,
            "backend": local.describe(),
            "serve_args": args.serve_args,
            "clients": args.clients,
            "requests_per_client": args.requests,
            "repeats": args.repeats,
            "frame_size": args.frame_size,
            "host_cpus": os.cpu_count(),
        }
        runs = {name: [] for name in paths}
        server_of = {name: None if name == "in_process" else servers[name.startswith("plain")].pid for name in paths}
        for _ in range(args.repeats):
            for name, make in paths.items():
                runs[name].append(run_clients(make, frames, args.clients, args.requests, server_of[name]))
        result.update({name: summarize(r) for name, r in runs.items()})
        a = result["in_process"].pop("top1")
        result["identical_top1"] = {}
        for name in list(paths)[1:]:
            b = result[name].pop("top1")
            result["identical_top1"][name] = {"compared": len(b), "equal": sum(b[i] == a[i] for i in b)}
            result[name]["ratio_vs_in_process"] = result[name]["req_per_s"] / result["in_process"]["req_per_s"]
        for name in paths:
            r, same = result[name], result["identical_top1"].get(name)
            print(
                f"{name:34s} {r['requests']} requests from {args.clients} clients: {r['req_per_s']:.0f} req/s "
                f"(runs {', '.join(f'{v:.0f}' for v in r['req_per_s_runs'])})"
                + (f", {r['ratio_vs_in_process']:.2f}× in-process" if "ratio_vs_in_process" in r else "")
                + f", p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, failed {r['failed']}"
                + f"; CPU ms/request: clients {r['client_cpu_ms_per_request']:.2f}"
                + (f", server {r['server_cpu_ms_per_request']:.2f}" if name != "in_process" else "")
                + f", cores busy {r['cores_busy']:.0%}"
                + (f", identical top-1 {same['equal']}/{same['compared']}" if same else ""),
                flush=True,
            )
        if not args.no_plain:
            result["tensor_vs_plain"] = {}
            for protocol in ("http", "grpc"):
                theirs = runs[f"plain_pytriton_{protocol}"]
                for client, ours in (
                    ("the same plain client", runs[f"tensor_{protocol}_plain_client"]),
                    ("RemoteClassifier", runs[f"remote_{protocol}_client_preprocessed"]),
                ):
                    ratios = sorted(o["req_per_s"] / t["req_per_s"] for o, t in zip(ours, theirs, strict=True))
                    result["tensor_vs_plain"].setdefault(protocol, {})[client] = ratios
                    print(
                        f"{model}_tensor with {client} vs plain PyTriton over {protocol}: "
                        f"{ratios[len(ratios) // 2]:.2f}× (per round {ratios[0]:.2f}–{ratios[-1]:.2f}×)",
                        flush=True,
                    )
        if args.paced_s:
            remote_grpc = RemoteClassifier(grpc, model, deadline_s=10.0, preprocess_with=args.bundle)
            result["paced"] = paced(remote_grpc, frames, args.paced_rate, args.paced_s, servers[0].pid)
        if args.soak_s:
            before = tree_rss_mb(servers[0].pid)
            result["soak"] = soak(remote.predict, frames, args.soak_rate, args.soak_s)
            result["soak"].update(server_rss_mb_before=before, server_rss_mb_after=tree_rss_mb(servers[0].pid))
            s = result["soak"]
            print(
                f"soak {s['seconds']:.0f} s at {s['rate_per_s']:.0f} req/s: {s['requests']} requests, {s['failed']} "
                "failed, "
                f"p50 {s['p50_ms']:.2f} ms, p99 {s['p99_ms']:.2f} ms; server memory {s['server_rss_mb_before']:.0f} → "
                f"{s['server_rss_mb_after']:.0f} MB",
                flush=True,
            )
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=60)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
