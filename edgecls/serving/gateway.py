"""The HTTP door of `edgecls serve`: requests are checked here before Triton, which listens on loopback behind it.

Why a door of our own: tritonserver's HTTP front end sizes a JSON request's tensor from its declared shape before
it reads the data, so one 90-byte request declaring [1, 100000, 100000, 3] kills the server (std::bad_alloc), and
a failure inside a Python-backend model comes back as HTTP 500 with a traceback that names server paths.
tritonserver cannot bound a declared shape. Here each inference request is checked against what
the bundle's two models accept (one input, its datatype, shape within limits, byte count equal to the shape,
finite tensor values) and bad input is answered 400 with what is wrong and how to fix it. A failure on the server
is answered 500 without the traceback (the server's log keeps it). `/v2/health/ready` answers 200 only when every
model answers ready. Only the routes a client needs are forwarded: health, server and model metadata, config,
statistics, inference; not repository control, shared memory, trace or log settings.

gRPC requests pass the gRPC door (`grpc_gateway.py`), which applies these same rules (`check_tensor`).
"""

from __future__ import annotations

import http.client
import json
import math
import re
import socket
import threading

import numpy as np

from edgecls.errors import ConfigError, InputError
from edgecls.httpserver import BoundedHTTPServer, DeadlineHandler
from edgecls.serving.triton_schema import DTYPES, ModelInput

MODEL_ROUTE = re.compile(r"^/v2/models/([^/]+)(?:/versions/[0-9]+)?(/ready|/config|/stats|/infer)?$")
OPEN_ROUTES = ("/v2", "/v2/health/live")
REQUEST_PARAMETERS = {"binary_data_output", "timeout", "priority"}
OUTPUT_PARAMETERS = {"binary_data", "classification"}


def check_infer(rule: ModelInput, request, binary: bytes, max_batch: int, max_side: int) -> None:
    """Raise InputError unless `request` (the JSON header) and `binary` (the bytes after it) are one valid input."""
    if not isinstance(request, dict):
        raise InputError("the request body must be a JSON object with an 'inputs' list (KServe v2 protocol)")
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InputError(f"the request must carry exactly one input, {rule.name!r}")
    outputs = request.get("outputs") or []
    if not isinstance(outputs, list) or not all(isinstance(o, dict) for o in outputs):
        raise InputError("'outputs' must be a list of objects")
    tensor = inputs[0]
    unknown = set(_parameters(request)) - REQUEST_PARAMETERS | set(_parameters(tensor)) - {"binary_data_size"}
    for output in outputs:
        unknown |= set(_parameters(output)) - OUTPUT_PARAMETERS
    if unknown:
        raise InputError(
            f"unsupported parameters {sorted(unknown)}: edgecls serve takes the data in the request "
            "(JSON or binary), not through shared memory"
        )
    for name, value in _parameters(request).items():
        if name in ("timeout", "priority") and (type(value) is not int or value < 0):
            raise InputError(f"request parameter {name!r} must be a whole number ≥ 0, got {value!r}")
    size = check_tensor(rule, tensor.get("name"), tensor.get("datatype"), tensor.get("shape"), max_batch, max_side)
    shape = tensor["shape"]
    dtype = DTYPES[rule.datatype]
    count = size // dtype.itemsize
    if "binary_data_size" in _parameters(tensor):
        declared = tensor["parameters"]["binary_data_size"]
        if "data" in tensor or declared != size or len(binary) != size:
            raise InputError(
                f"input {rule.name!r} of shape {shape} needs {size} bytes of binary data, "
                f"got {len(binary)} (binary_data_size {declared})"
            )
        values = np.frombuffer(binary, dtype) if rule.finite else None
    else:
        if binary:
            raise InputError("binary data follows the JSON header but no input declares binary_data_size")
        try:
            values = np.asarray(tensor.get("data"))
        except ValueError:
            raise InputError(f"input {rule.name!r}: 'data' is a ragged list; send {count} numbers") from None
        if values.dtype.kind not in "iuf" or values.size != count:
            raise InputError(
                f"input {rule.name!r} of shape {shape} needs {count} numbers in 'data', got "
                f"{values.size if values.dtype.kind in 'iuf' else 'no numbers'}"
            )
    check_values(rule, values)


def check_tensor(rule: ModelInput, name, datatype, shape, max_batch: int, max_side: int) -> int:
    """Raise InputError unless an input `name` of `datatype` and `shape` is what `rule` takes; its byte count."""
    expected = rule.describe(max_batch, max_side)
    if name != rule.name or datatype != rule.datatype:
        raise InputError(f"this model takes one input {rule.name!r} of {expected}, got {name!r} of {datatype}")
    if not isinstance(shape, list) or not all(type(d) is int for d in shape) or len(shape) != 1 + len(rule.item_shape):
        raise InputError(f"input {rule.name!r} must have shape {expected}, got {shape}")
    fits = [
        1 <= got <= max_side if want is None else got == want
        for got, want in zip(shape[1:], rule.item_shape, strict=True)
    ]
    if not 1 <= shape[0] <= max_batch or not all(fits) or (rule.last_axis and shape[-1] not in rule.last_axis):
        raise InputError(f"input {rule.name!r} must have shape {expected}, got {shape}")
    return math.prod(shape) * DTYPES[rule.datatype].itemsize


def check_values(rule: ModelInput, values: np.ndarray | None) -> None:
    """Raise InputError unless the values sent as numbers (not raw bytes, which are `rule`'s dtype by construction)
    fit the input: pixels are integers 0–255; tensors are finite (checked for raw bytes too: pass them as values)."""
    if values is None:
        return
    if (
        DTYPES[rule.datatype].kind == "u"
        and values.size
        and (values.dtype.kind == "f" or values.min() < 0 or values.max() > 255)
    ):
        raise InputError(f"input {rule.name!r} holds pixels: integers 0–255")
    if rule.finite and not np.isfinite(values).all():
        raise InputError(f"input {rule.name!r} holds NaN or infinite values; send the preprocessed, normalized image")


def _parameters(part: dict) -> dict:
    parameters = part.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise InputError("'parameters' must be a JSON object")
    return parameters


def _public_error(status: int, body: bytes) -> bytes:
    """Triton's error answer without the Python traceback the Python backend puts in it (the server's log keeps it)."""
    try:
        message = str(json.loads(body).get("error", ""))
    except (ValueError, AttributeError):
        message = ""
    message = message.split(", message:")[0].split("\n")[0] or f"inference failed (HTTP {status})"
    return json.dumps({"error": f"{message} (the server's log has the details)"}).encode()


class _NoDelayConnection(http.client.HTTPConnection):
    """An upstream connection with Nagle's algorithm off. http.client writes a request's headers and body in two
    sends; with Nagle on, the body waits for the ACK of the headers, which the peer delays by up to 40 ms on a
    kept-alive connection. Measured with one client: 56 ms a request through the gateway, 15–18 ms with Nagle off on
    both of its connections (a training run shared the CPU)."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class GatewayHandler(DeadlineHandler):
    """One client connection of the gateway (`self.server.gateway`): checks each request, relays it to Triton."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the answer's headers and body are two writes: see _NoDelayConnection

    @property
    def gateway(self) -> Gateway:
        return self.server.gateway

    def log_message(self, *args) -> None:
        pass

    def reply(self, status: int, body: bytes, headers: dict | None = None, close: bool = False) -> None:
        self.send_response(status)
        for name, value in (headers or {"Content-Type": "application/json"}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def refuse(self, status: int, message: str, close: bool = False) -> None:
        self.reply(status, json.dumps({"error": message}).encode(), close=close)

    def unknown_model(self, route) -> bool:
        if route and route[1] not in self.gateway.models:
            self.refuse(
                404, f"unknown model {route[1]!r}; this server serves {', '.join(self.gateway.models)}", close=True
            )
            return True
        return False

    def do_GET(self) -> None:
        models = self.gateway.models
        if self.path == "/v2/health/ready":
            ready = all(self.relay("GET", f"/v2/models/{m}/ready", None, {}, answer=False) == 200 for m in models)
            return self.reply(200 if ready else 503, b"")
        route = MODEL_ROUTE.match(self.path)
        if self.unknown_model(route):
            return None
        if self.path in OPEN_ROUTES or (route and route[2] != "/infer"):
            return self.relay("GET", self.path, None, {})
        self.refuse(404, f"edgecls serve has no GET {self.path}; models: {', '.join(models)}")

    def do_POST(self) -> None:
        gateway, route = self.gateway, MODEL_ROUTE.match(self.path)
        if self.unknown_model(route):
            return None
        if not route or route[2] != "/infer":
            return self.refuse(
                404, f"edgecls serve takes POST /v2/models/NAME/infer only; models: {', '.join(gateway.models)}", True
            )
        body = self.read_body()
        if body is None:
            return None
        if self.headers.get("Content-Encoding", "identity") != "identity":
            return self.refuse(415, "compressed requests are not taken; send the body uncompressed")
        header_length = self.headers.get("Inference-Header-Content-Length")
        if header_length is not None and not (header_length.isascii() and header_length.isdigit()):
            return self.refuse(400, "Inference-Header-Content-Length must be a decimal byte count (0-9)")
        split = int(header_length) if header_length else len(body)
        try:
            request = json.loads(body[:split])
            check_infer(gateway.models[route[1]], request, body[split:], gateway.max_batch, gateway.max_side)
        except RecursionError:
            return self.refuse(400, "the JSON header is nested too deeply")
        except ValueError as exc:  # InputError, and JSON that does not parse
            return self.refuse(
                400, str(exc) if isinstance(exc, InputError) else f"the JSON header does not parse: {exc}"
            )
        headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
        if header_length:
            headers["Inference-Header-Content-Length"] = header_length
        self.relay("POST", self.path, body, headers)

    def read_body(self) -> bytes | None:
        """The request's body, within its deadline; None once the request was refused or the client is gone."""
        length, limit = self.headers.get("Content-Length"), self.gateway.max_request_bytes
        if length is None or not (length.isascii() and length.isdigit()):
            self.refuse(411, "send a Content-Length (chunked requests are not taken)", close=True)
            return None
        if int(length) > limit:
            self.refuse(
                413,
                f"request of {int(length)} bytes is over the server's limit of {limit} "
                "(edgecls serve --max-request-mb)",
                close=True,
            )
            return None
        self.expect_body(int(length))
        body = self.rfile.read(int(length))
        self.server.busy(self.connection)
        if len(body) < int(length):  # the body's deadline passed, or the client left
            self.close_connection = True
            return None
        return body

    def relay(self, method: str, path: str, body: bytes | None, headers: dict, answer: bool = True) -> int:
        try:
            status, got, content = self.gateway.forward(method, path, body, headers)
        except (OSError, http.client.HTTPException):
            if answer:
                self.refuse(503, "Triton is not answering (starting, stopping or stopped); retry later")
            return 503
        if answer:
            keep = {k: v for k, v in got.items() if k in ("Content-Type", "Inference-Header-Content-Length")}
            self.reply(
                status,
                _public_error(status, content) if status >= 500 else content,
                headers=keep if status < 500 else None,
            )
        return status


class Gateway:
    """Listens on (host, port), checks requests, forwards them to Triton's HTTP endpoint on 127.0.0.1:upstream_port."""

    def __init__(
        self,
        host: str,
        port: int,
        upstream_port: int,
        models: dict[str, ModelInput],
        max_batch: int,
        max_side: int = 4096,
        max_request_bytes: int = 64 << 20,
        max_connections: int = 128,
        idle_timeout_s: float = 60.0,
        header_timeout_s: float = 10.0,
        body_timeout_s: float = 10.0,
        min_body_rate: int = 64 << 10,
        upstream_timeout_s: float = 120.0,
    ):
        self.models, self.max_batch, self.max_side = models, max_batch, max_side
        self.max_request_bytes = max_request_bytes
        self.upstream_port, self.upstream_timeout_s = upstream_port, upstream_timeout_s
        self._local = threading.local()
        handler = type(
            "Handler",
            (GatewayHandler,),
            {
                "timeout": idle_timeout_s,
                "idle_timeout_s": idle_timeout_s,
                "header_timeout_s": header_timeout_s,
                "body_timeout_s": body_timeout_s,
                "min_body_rate": min_body_rate,
            },
        )
        try:
            self.server = BoundedHTTPServer((host, port), handler, max_connections)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --http-port") from None
        self.server.gateway = self
        self._thread = threading.Thread(target=self.server.serve_forever, name="edgecls-gateway", daemon=True)

    def _upstream(self) -> http.client.HTTPConnection:
        """This thread's kept-alive connection to Triton."""
        if getattr(self._local, "conn", None) is None:
            self._local.conn = _NoDelayConnection("127.0.0.1", self.upstream_port, timeout=self.upstream_timeout_s)
        return self._local.conn

    def forward(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, dict, bytes]:
        for attempt in (1, 2):  # a kept-alive upstream connection may have been closed since its last use
            conn = self._upstream()
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, dict(response.getheaders()), response.read()
            except (ConnectionError, http.client.HTTPException, TimeoutError) as exc:
                conn.close()
                self._local.conn = None
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise
        raise AssertionError("unreachable")

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        self.server.server_close()
