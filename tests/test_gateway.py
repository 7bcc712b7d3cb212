"""The serve gateway against a stand-in Triton: what it refuses, what it forwards, and what it never passes back."""

import http.client
import json
import socket
import statistics
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from edgecls.errors import ConfigError, InputError
from edgecls.imaging import ImageInput
from edgecls.serving.gateway import Gateway, _NoDelayConnection, check_infer
from edgecls.serving.triton_schema import frames_input, tensors_input

TENSORS = tensors_input(ImageInput(size=4, channels=3))
TRACEBACK = (
    "Failed to process the request(s) for model 'm_0_0', message: TritonModelException: Model execute error: "
    'Traceback (most recent call last):\n  File "/tmp/folderX/1/model.py", line 486, in execute\n'
)


class FakeTriton:
    """Answers like tritonserver: models ready or not, inference 200 or a PyTriton 500 with its traceback."""

    def __init__(self):
        self.ready, self.fail, self.received = True, False, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # as tritonserver's front end answers

            def log_message(self, *args):
                pass

            def answer(self, status, body=b"", headers=()):
                self.send_response(status)
                for header in headers:
                    self.send_header(*header)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self.answer(200 if fake.ready else 400)

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fake.received.append((self.path, body, self.headers.get("Inference-Header-Content-Length")))
                if fake.fail:
                    return self.answer(500, json.dumps({"error": TRACEBACK}).encode())
                self.answer(200, b'{"outputs":[]}', [("Content-Type", "application/json")])

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def triton():
    fake = FakeTriton()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def gateway(triton):
    door = Gateway(
        "127.0.0.1",
        0,
        triton.port,
        {"m": frames_input(), "m_tensor": TENSORS},
        max_batch=4,
        max_side=64,
        max_request_bytes=1 << 16,
    )
    door.start()
    yield f"http://127.0.0.1:{door.server.server_address[1]}"
    door.close()


def call(url, body=None, headers=None):
    try:
        with urllib.request.urlopen(
            urllib.request.Request(url, data=body, headers=headers or {}), timeout=10
        ) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read()


def frame_request(shape, data=None, **parameters):
    tensor = {"name": "frame", "shape": shape, "datatype": "UINT8"}
    if data is not None:
        tensor["data"] = data
    if parameters:
        tensor["parameters"] = parameters
    return {"inputs": [tensor]}


@pytest.mark.parametrize(
    ("request_", "binary", "reason"),
    [
        (frame_request([1, 100000, 100000, 3], []), b"", r"\[1\.\.4, 1\.\.64, 1\.\.64, 1\|3\|4\]"),
        (frame_request([5, 8, 8, 3], [0] * 960), b"", "shape"),
        (frame_request([1, 8, 8, 2], [0] * 128), b"", "shape"),
        (frame_request([1, 0, 8, 3], []), b"", "shape"),
        (frame_request([1, 8, 8], [0] * 64), b"", "shape"),
        (frame_request([1, 8, 8, 3], [0] * 10), b"", "needs 192 numbers"),
        (frame_request([1, 8, 8, 3], [[0, 1], [2]]), b"", "ragged"),
        (frame_request([1, 2, 2, 1], [0, 1, 2, 300]), b"", "0–255"),
        (frame_request([1, 2, 2, 1], ["a", "b", "c", "d"]), b"", "numbers"),
        (frame_request([1, 2, 2, 1], binary_data_size=4), b"\0" * 3, "needs 4 bytes"),
        (frame_request([1, 2, 2, 1], binary_data_size=10**12), b"\0" * 4, "needs 4 bytes"),
        (frame_request([1, 2, 2, 1], [0] * 4), b"\0" * 4, "no input declares binary_data_size"),
        (frame_request([1, 2, 2, 1], shared_memory_region="r", shared_memory_byte_size=4), b"", "shared memory"),
        (
            {"inputs": [{"name": "input", "shape": [1, 2, 2, 1], "datatype": "UINT8", "data": [0] * 4}]},
            b"",
            "one input 'frame'",
        ),
        ({"inputs": [{"name": "frame", "shape": [1, 2, 2, 1], "datatype": "FP32", "data": [0] * 4}]}, b"", "UINT8"),
        ({"inputs": []}, b"", "exactly one input"),
        ([1, 2], b"", "JSON object"),
        ({**frame_request([1, 2, 2, 1], [0] * 4), "parameters": {"timeout": -1}}, b"", "'timeout' must be"),
        ({**frame_request([1, 2, 2, 1], [0] * 4), "parameters": {"priority": "high"}}, b"", "'priority' must be"),
    ],
)
def test_bad_frame_requests_are_refused_with_the_reason(request_, binary, reason):
    with pytest.raises(InputError, match=reason):
        check_infer(frames_input(), request_, binary, max_batch=4, max_side=64)


def test_valid_requests_pass_in_json_and_binary():
    check_infer(frames_input(), frame_request([2, 3, 5, 1], list(range(30))), b"", max_batch=4, max_side=64)
    check_infer(frames_input(), frame_request([1, 64, 64, 4], binary_data_size=64 * 64 * 4), bytes(64 * 64 * 4), 4, 64)
    tensor = np.zeros((2, 3, 4, 4), np.float32)
    request = {
        "inputs": [
            {
                "name": "input",
                "shape": [2, 3, 4, 4],
                "datatype": "FP32",
                "parameters": {"binary_data_size": tensor.nbytes},
            }
        ],
        "outputs": [{"name": "label", "parameters": {"binary_data": True}}],
    }
    check_infer(TENSORS, request, tensor.tobytes(), max_batch=4, max_side=64)
    tensor[1, 2, 3, 3] = np.inf
    with pytest.raises(InputError, match="NaN or infinite"):
        check_infer(TENSORS, request, tensor.tobytes(), max_batch=4, max_side=64)
    with pytest.raises(InputError, match=r"\[1\.\.4, 3, 4, 4\]"):
        check_infer(
            TENSORS,
            {"inputs": [{"name": "input", "shape": [1, 3, 4, 5], "datatype": "FP32", "data": [0.0] * 60}]},
            b"",
            max_batch=4,
            max_side=64,
        )


def test_good_requests_reach_triton_unchanged_and_bad_ones_never_do(gateway, triton):
    header = json.dumps(frame_request([1, 2, 2, 1], binary_data_size=4)).encode()
    body = header + b"\1\2\3\4"
    status, answer = call(f"{gateway}/v2/models/m/infer", body, {"Inference-Header-Content-Length": str(len(header))})
    assert (status, answer) == (200, b'{"outputs":[]}')
    assert triton.received == [("/v2/models/m/infer", body, str(len(header)))]
    status, answer = call(f"{gateway}/v2/models/m/infer", json.dumps(frame_request([1, 10**5, 10**5, 3], [])).encode())
    assert status == 400 and "got [1, 100000, 100000, 3]" in json.loads(answer)["error"]
    assert call(f"{gateway}/v2/models/m/infer", b"{not json")[0] == 400
    assert len(triton.received) == 1


def test_kept_alive_requests_are_not_held_for_delayed_acks(gateway):
    """With Nagle's algorithm on either of the gateway's two connections, each answer waits ≥ 40 ms for the peer's
    delayed ACK (measured: 48–56 ms a request through `edgecls serve`); without it a request here takes ~1 ms."""
    header = json.dumps(frame_request([1, 2, 2, 1], binary_data_size=4)).encode()
    headers = {"Inference-Header-Content-Length": str(len(header))}
    client = _NoDelayConnection("127.0.0.1", int(gateway.rsplit(":", 1)[1]), timeout=10)  # as tritonclient connects
    took = []
    for _ in range(15):
        started = time.perf_counter()
        client.request("POST", "/v2/models/m/infer", header + b"\1\2\3\4", headers)
        assert client.getresponse().read() == b'{"outputs":[]}'
        took.append(time.perf_counter() - started)
    client.close()
    assert statistics.median(took) < 0.02


def test_server_failures_reach_the_client_without_the_traceback(gateway, triton):
    triton.fail = True
    status, answer = call(f"{gateway}/v2/models/m/infer", json.dumps(frame_request([1, 1, 1, 1], [0])).encode())
    error = json.loads(answer)["error"]
    assert status == 500 and error.startswith("Failed to process the request(s) for model 'm_0_0'")
    assert "Traceback" not in error and "model.py" not in error


def test_only_the_routes_a_client_needs_are_open(gateway, triton):
    assert call(f"{gateway}/v2/models/m/ready")[0] == 200
    assert call(f"{gateway}/v2/models/m_tensor/versions/1/config")[0] == 200
    assert call(f"{gateway}/v2/health/live")[0] == 200
    for path in (
        "/v2/repository/index",
        "/v2/systemsharedmemory/status",
        "/v2/trace/setting",
        "/v2/logging",
        "/v2/models/other/ready",
    ):
        assert call(f"{gateway}{path}")[0] == 404, path
    status, answer = call(f"{gateway}/v2/models/other/infer", b"{}")
    assert status == 404 and json.loads(answer)["error"] == "unknown model 'other'; this server serves m, m_tensor"
    assert call(f"{gateway}/v2/repository/models/m/unload", b"{}")[0] == 404
    assert not triton.received


def test_requests_over_the_size_limit_or_without_a_length_are_refused_unread(gateway):
    status, answer = call(f"{gateway}/v2/models/m/infer", bytes(1 << 17))
    assert status == 413 and "--max-request-mb" in json.loads(answer)["error"]
    host, port = gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:
        raw.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert raw.recv(100).startswith(b"HTTP/1.1 411")


def test_ready_only_when_every_model_answers_ready(gateway, triton):
    assert call(f"{gateway}/v2/health/ready")[0] == 200
    triton.ready = False
    assert call(f"{gateway}/v2/health/ready")[0] == 503


def test_a_stopped_triton_is_answered_503(gateway, triton):
    triton.server.shutdown()
    triton.server.server_close()
    status, answer = call(f"{gateway}/v2/models/m/infer", json.dumps(frame_request([1, 1, 1, 1], [0])).encode())
    assert status == 503 and "not answering" in json.loads(answer)["error"]
    assert call(f"{gateway}/v2/health/ready")[0] == 503


def test_a_taken_port_is_a_config_error(triton):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigError, match="--http-port"):
            Gateway("127.0.0.1", taken.getsockname()[1], triton.port, {}, max_batch=1)


def test_malformed_headers_and_deep_json_are_refused_without_dropping_the_connection(gateway, triton):
    """A Unicode digit in Inference-Header-Content-Length and JSON nested 100,000 deep each dropped the connection with
    a traceback in the log; both are a 400 with the reason, and nothing reaches Triton."""
    body = json.dumps(frame_request([1, 2, 2, 1], [0] * 4)).encode()
    host, port = gateway.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as raw:  # urllib cannot send a non-Latin-1 header
        raw.sendall(
            b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n" % len(body)
            + "Inference-Header-Content-Length: \u0663\r\n\r\n".encode()
            + body
        )
        response = http.client.HTTPResponse(raw)
        response.begin()
        assert response.status == 400 and "decimal byte count" in json.loads(response.read())["error"]
    deep = b"[" * 30_000 + b"]" * 30_000  # within the 64 KB limit of this gateway
    status, answer = call(f"{gateway}/v2/models/m/infer", deep)
    assert status == 400 and "nested too deeply" in json.loads(answer)["error"]
    assert triton.received == []


def _small_gateway(triton, slots: int, **deadlines) -> Gateway:
    door = Gateway(
        "127.0.0.1", 0, triton.port, {"m": frames_input()}, max_batch=4, max_side=64, max_connections=slots, **deadlines
    )
    door.start()
    return door


def _slow_client(port: int, stop: threading.Event, body: bool = True) -> None:
    """Sends a request's headers (or, with body=False, half of them) and then one byte a second, reconnecting when
    the gateway closes it, until `stop`."""
    while not stop.is_set():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                if body:
                    s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
                else:
                    s.sendall(b"POST /v2/models/m/infer HTTP/1.1\r\n")
                while not stop.wait(1.0):
                    s.sendall(b"{" if body else b"X")
        except OSError:
            stop.wait(0.1)


def test_slow_clients_holding_every_slot_leave_room_for_an_honest_one(triton):
    """12 clients trickling bodies and 4 trickling headers against 8 slots: each read's timeout restarts with every
    byte, so before deadlines and take-overs they held the slots and every honest request was answered 503."""
    door = _small_gateway(triton, slots=8)
    port, stop = door.server.server_address[1], threading.Event()
    slow = [threading.Thread(target=_slow_client, args=(port, stop, i < 12), daemon=True) for i in range(16)]
    for thread in slow:
        thread.start()
    time.sleep(2.5)
    request = json.dumps(frame_request([1, 1, 1, 1], [0])).encode()
    answers = []
    try:
        for _ in range(20):
            try:
                answers.append(call(f"http://127.0.0.1:{port}/v2/models/m/infer", request)[0])
            except urllib.error.URLError as exc:  # answered 503 and closed before the body was sent
                answers.append(str(exc.reason))
    finally:
        stop.set()
        door.close()
    assert answers.count(200) >= 18, answers


def test_a_request_s_whole_life_is_bounded_however_slowly_its_bytes_arrive(triton):
    """Headers must arrive within header_timeout_s and a body at min_body_rate, however often a byte comes."""
    door = _small_gateway(triton, slots=8, header_timeout_s=1.5, body_timeout_s=1.5, min_body_rate=1 << 20)
    port = door.server.server_address[1]
    try:
        for first, then in (
            (b"POST /v2/models/m/infer HTTP/1.1\r\n", b"X"),
            (b"POST /v2/models/m/infer HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", b"{"),
        ):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                started = time.monotonic()
                s.sendall(first)
                with pytest.raises(OSError):
                    while time.monotonic() - started < 6:
                        time.sleep(0.3)
                        s.sendall(then)
                        if s.recv(1, socket.MSG_DONTWAIT | socket.MSG_PEEK) == b"":
                            raise ConnectionResetError("closed by the gateway")
            assert 1.4 < time.monotonic() - started < 3.5
    finally:
        door.close()
