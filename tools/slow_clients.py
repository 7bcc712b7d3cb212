"""N slow HTTP clients beside one honest client, against a real `edgecls serve` (started here on free ports).

    python tools/slow_clients.py exports/mobilenet_mod --slow 130 --seconds 40

Each slow client sends a request's headers and then one body byte every `--byte-every-s` seconds (a fifth of them
trickle their headers instead), reconnecting whenever the server closes it. The honest client opens a new
connection per request and sends one camera frame at a time for `--seconds`. Prints how many honest requests were
answered 200, what the others got, the slow clients' connection count, and the honest latency's p50/p99.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from load_test import free_ports, start_server  # noqa: E402


def slow_client(
    port: int, model: str, stop: threading.Event, every_s: float, headers_only: bool, connections: list
) -> None:
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
                connections.append(1)
                head = f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: x\r\n".encode()
                s.sendall(head if headers_only else head + b"Content-Length: 100000\r\n\r\n")
                while not stop.wait(every_s):
                    s.sendall(b"X" if headers_only else b"{")
        except OSError:
            stop.wait(0.2)


def honest_request(port: int, model: str, frame: np.ndarray) -> str:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "frame",
                    "shape": [1, *frame.shape],
                    "datatype": "UINT8",
                    "parameters": {"binary_data_size": frame.nbytes},
                }
            ]
        }
    ).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            f"/v2/models/{model}/infer",
            header + frame.tobytes(),
            {"Inference-Header-Content-Length": str(len(header))},
        )
        return str(conn.getresponse().status)
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    finally:
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--model", default=None, help="the served model's name (default: the bundle's folder name)")
    parser.add_argument("--slow", type=int, default=130)
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--byte-every-s", type=float, default=5.0)
    args = parser.parse_args()
    model = args.model or Path(args.bundle).name
    ports = free_ports(3)
    proc = start_server(args.bundle, model, ports, [])
    stop, connections = threading.Event(), []
    try:
        for i in range(args.slow):
            threading.Thread(
                target=slow_client,
                args=(ports[0], model, stop, args.byte_every_s, i % 5 == 0, connections),
                daemon=True,
            ).start()
        time.sleep(3.0)
        frame = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
        answers, took, end = [], [], time.monotonic() + args.seconds
        while time.monotonic() < end:
            started = time.perf_counter()
            answers.append(honest_request(ports[0], model, frame))
            took.append(time.perf_counter() - started)
    finally:
        stop.set()
        proc.terminate()
        stopped = proc.wait(timeout=120)
    answered = answers.count("200")
    print(
        f"{args.slow} slow clients ({len(connections)} connections opened) for {args.seconds:.0f} s: the honest client "
        f"got {answered}/{len(answers)} answers ({100 * answered / max(len(answers), 1):.1f}%); others: "
        f"{ {a: answers.count(a) for a in set(answers) - {'200'}} }; latency p50 {1000 * np.percentile(took, 50):.0f} "
        f"ms, p99 {1000 * np.percentile(took, 99):.0f} ms; serve exited {stopped} after SIGTERM"
    )


if __name__ == "__main__":
    main()
