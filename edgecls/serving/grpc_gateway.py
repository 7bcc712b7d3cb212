"""The gRPC door of `edgecls serve`: each request is checked here, by the HTTP door's rules (`gateway.py`), before
Triton, whose own gRPC endpoint listens on loopback behind it.

Why a door of our own: tritonserver's gRPC front end has no option bounding a message (it takes up to 2 GB), nor a
frame's side, and it checks a raw input only by byte count. Measured against Triton 2.x as PyTriton ships it: one
12-byte request declaring UINT8 [1,-2,-2,3] ((-2)·(-2)·3 = 12 bytes) killed the model's stub process, and every
request after it failed while health still said ready; one [64,2000,2000,3] request (768 MB) left 2.5 GB held in
Triton and its stub; UINT8 contents of 300 were wrapped to 44 without a word; two raw contents for one input passed.
Triton's own options are used for what they cover (model-control mode none and restricted protocols stay on behind
this door); the rest is here: a message-size limit at the transport (gRPC's own max_receive_message_length, refused
before a byte reaches Python), and for ModelInfer one input of the served model's datatype and shape within
limits, its data either one raw content of exactly the shape's byte count or typed contents of the shape's count,
pixels 0–255, tensors finite, and no shared-memory parameters.

Only what a client needs is forwarded (health, metadata, config, statistics, ModelInfer), as bytes: the request is
parsed to be checked, not re-encoded. Everything else of Triton's service (repository control, shared memory,
trace, log settings, streaming) is answered PERMISSION_DENIED or UNIMPLEMENTED by name. Triton's error messages
come back without the Python traceback the Python backend puts in them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
from tritonclient.grpc import service_pb2

from edgecls.errors import ConfigError, InputError
from edgecls.serving.gateway import check_tensor, check_values
from edgecls.serving.triton_schema import DTYPES, ModelInput

SERVICE = "inference.GRPCInferenceService"
FORWARDED = (
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelConfig",
    "ModelStatistics",
)
REQUEST_PARAMETERS = {"timeout", "priority"}
OUTPUT_PARAMETERS = {"classification"}
CONTENTS = {"UINT8": "uint_contents", "FP32": "fp32_contents"}  # the typed field KServe's gRPC protocol uses


def check_grpc_infer(rule: ModelInput, request: service_pb2.ModelInferRequest, max_batch: int, max_side: int) -> None:
    """Raise InputError unless `request` carries one valid input for `rule` (see the module's docstring)."""
    if len(request.inputs) != 1:
        raise InputError(f"the request must carry exactly one input, {rule.name!r}")
    tensor = request.inputs[0]
    unknown = set(request.parameters) - REQUEST_PARAMETERS | set(tensor.parameters)
    for output in request.outputs:
        unknown |= set(output.parameters) - OUTPUT_PARAMETERS
    if unknown:
        raise InputError(
            f"unsupported parameters {sorted(unknown)}: edgecls serve takes the data in the request, not through "
            "shared memory"
        )
    for name in REQUEST_PARAMETERS & set(request.parameters):
        parameter = request.parameters[name]
        if parameter.WhichOneof("parameter_choice") not in ("int64_param", "uint64_param") or (
            parameter.int64_param < 0
        ):
            raise InputError(f"request parameter {name!r} must be a whole number ≥ 0")
    size = check_tensor(rule, tensor.name, tensor.datatype, list(tensor.shape), max_batch, max_side)
    dtype = DTYPES[rule.datatype]
    typed = [field.name for field, _ in tensor.contents.ListFields()]
    raw = request.raw_input_contents
    if raw:
        if len(raw) != 1 or typed or len(raw[0]) != size:
            raise InputError(
                f"input {rule.name!r} of shape {list(tensor.shape)} needs one raw content of {size} bytes, got "
                f"{len(raw)} raw contents of {[len(r) for r in raw]} bytes"
                + (f" and typed contents {typed}" if typed else "")
            )
        check_values(rule, np.frombuffer(raw[0], dtype) if rule.finite else None)
        return
    field = CONTENTS[rule.datatype]
    values = np.asarray(getattr(tensor.contents, field))
    if typed != [field] or values.size != size // dtype.itemsize:
        raise InputError(
            f"input {rule.name!r} of shape {list(tensor.shape)} needs {size // dtype.itemsize} values in "
            f"contents.{field} (or one raw content), got {typed or 'none'}"
        )
    check_values(rule, values)


def _public(details: str | None) -> str:
    """Triton's error without the Python traceback the Python backend puts in it (the server's log keeps it)."""
    message = (details or "").split(", message:")[0].split("\n")[0]
    return f"{message or 'inference failed'} (the server's log has the details)"


class GrpcGateway:
    """Listens on (host, port), checks requests, forwards them to Triton's gRPC endpoint on 127.0.0.1:upstream_port."""

    def __init__(
        self,
        host: str,
        port: int,
        upstream_port: int,
        models: dict[str, ModelInput],
        max_batch: int,
        max_side: int = 4096,
        max_request_bytes: int = 64 << 20,
        workers: int = 64,
        max_concurrent: int = 256,
        upstream_timeout_s: float = 120.0,
    ):
        self.models, self.max_batch, self.max_side = models, max_batch, max_side
        self.upstream_timeout_s = upstream_timeout_s
        limits = [("grpc.max_receive_message_length", max_request_bytes), ("grpc.max_send_message_length", -1)]
        self.channel = grpc.insecure_channel(f"127.0.0.1:{upstream_port}", options=limits)
        self.calls = {name: self.channel.unary_unary(f"/{SERVICE}/{name}") for name in (*FORWARDED, "ModelInfer")}
        handlers = {name: grpc.unary_unary_rpc_method_handler(self._forwarder(name)) for name in FORWARDED}
        handlers["ModelInfer"] = grpc.unary_unary_rpc_method_handler(self._infer)
        for method in service_pb2.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods:
            if method.name not in handlers:
                handlers[method.name] = _refusal(method)
        self.server = grpc.server(
            ThreadPoolExecutor(workers, thread_name_prefix="edgecls-grpc"),
            handlers=[grpc.method_handlers_generic_handler(SERVICE, handlers)],
            options=limits,
            maximum_concurrent_rpcs=max_concurrent,
        )
        try:
            bound = self.server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:
            bound = 0
        if not bound:
            self.channel.close()
            raise ConfigError(f"cannot listen on {host}:{port} for gRPC; choose another --grpc-port")
        self.port = bound

    def _upstream(self, method: str, raw: bytes, context: grpc.ServicerContext) -> bytes:
        remaining = context.time_remaining()
        timeout = self.upstream_timeout_s if remaining is None else min(remaining, self.upstream_timeout_s)
        try:
            return self.calls[method](raw, timeout=timeout)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                context.abort(exc.code(), "Triton is not answering (starting, stopping or stopped); retry later")
            context.abort(exc.code(), _public(exc.details()))

    def _forwarder(self, method: str):
        return lambda raw, context: self._upstream(method, raw, context)

    def _infer(self, raw: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            request = service_pb2.ModelInferRequest.FromString(raw)
        except Exception:  # protobuf's DecodeError; the message is the client's bytes, not ours
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not a ModelInferRequest")
        rule = self.models.get(request.model_name)
        if rule is None:
            context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"unknown model {request.model_name!r}; this server serves {', '.join(self.models)}",
            )
        try:
            check_grpc_infer(rule, request, self.max_batch, self.max_side)
        except InputError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        return self._upstream("ModelInfer", raw, context)

    def start(self) -> None:
        self.server.start()

    def close(self) -> None:
        self.server.stop(grace=None)
        self.channel.close()


def _refusal(method):
    """The answer to a method of Triton's service that edgecls serve does not offer."""
    if method.client_streaming or method.server_streaming:
        message = f"edgecls serve does not offer {method.name}; send one ModelInfer per request"

        def refuse_stream(requests, context):
            context.abort(grpc.StatusCode.UNIMPLEMENTED, message)

        return grpc.stream_stream_rpc_method_handler(refuse_stream)
    message = (
        f"edgecls serve does not offer {method.name}: clients may infer and read health, metadata, configs and "
        "statistics"
    )

    def refuse(raw, context):
        context.abort(grpc.StatusCode.PERMISSION_DENIED, message)

    return grpc.unary_unary_rpc_method_handler(refuse)
