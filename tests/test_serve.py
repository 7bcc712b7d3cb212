"""A real Triton server (PyTriton) on free localhost ports, real requests, answers compared with the in-process
Classifier."""

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from edgecls.errors import InputError, RemoteError, RemoteTimeoutError, RemoteUnavailableError
from edgecls.runtime import Classifier
from edgecls.serving import RemoteClassifier
from edgecls.serving.serve import pytriton_unavailable

sys.path.insert(0, str(Path(__file__).parents[1] / "tools"))
pytestmark = pytest.mark.skipif(
    pytriton_unavailable() is not None, reason=f"PyTriton cannot run here: {pytriton_unavailable()}"
)


@pytest.fixture(scope="module")
def server(bundle_dir):
    from load_test import free_ports, start_server

    ports = free_ports(3)
    proc = start_server(str(bundle_dir), "lenet5", ports, ["--max-batch", "16"])
    yield proc, ports
    if proc.poll() is None:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def frames(cifar_root):
    from edgecls.data import load_dataset

    test = load_dataset("cifar10", "test", cifar_root)
    return [
        cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2BGR), (96, 96), interpolation=cv2.INTER_NEAREST)
        for img in test.images
    ]


def test_remote_predictions_equal_the_in_process_classifier(server, bundle_dir, frames):
    _, (http, grpc, _) = server
    local = Classifier.load(bundle_dir)
    for url in (f"http://127.0.0.1:{http}", f"grpc://127.0.0.1:{grpc}"):
        remote = RemoteClassifier(url, "lenet5", deadline_s=10.0)
        got = [remote.predict(f) for f in frames]
        want = [local.predict(f) for f in frames]
        assert [g.index for g in got] == [w.index for w in want] and len(got) == 200
        assert [g.label for g in got[:5]] == [w.label for w in want[:5]]
        assert [n for n, _ in got[0].topk] == [n for n, _ in want[0].topk]
        assert [g.unknown for g in got] == [w.unknown for w in want] and any(w.unknown for w in want)
        np.testing.assert_allclose(np.stack([g.logits for g in got]), np.stack([w.logits for w in want]), atol=1e-5)
    batch = remote.predict_batch(frames[:8], color="bgr")
    assert [p.index for p in batch] == [w.index for w in want[:8]]


def test_a_client_that_preprocesses_sends_the_model_input_and_gets_the_same_answers(server, bundle_dir, frames):
    _, (http, grpc, _) = server
    local = Classifier.load(bundle_dir)
    want = [local.predict(f) for f in frames[:40]]
    for url in (f"http://127.0.0.1:{http}", f"grpc://127.0.0.1:{grpc}"):
        remote = RemoteClassifier(url, "lenet5", deadline_s=10.0, preprocess_with=bundle_dir)
        got = [remote.predict(f) for f in frames[:40]]
        assert [(g.index, g.label) for g in got] == [(w.index, w.label) for w in want]
        assert [[n for n, _ in g.topk] for g in got] == [[n for n, _ in w.topk] for w in want]
        probs = [[p for _, p in g.topk] for g in got]
        np.testing.assert_allclose(probs, [[p for _, p in w.topk] for w in want], atol=1e-6)
        np.testing.assert_allclose(np.stack([g.logits for g in got]), np.stack([w.logits for w in want]), atol=1e-5)
    with pytest.raises(InputError, match="bundle of 'lenet5'"):
        RemoteClassifier(f"http://127.0.0.1:{http}", "mobilenet_mod", preprocess_with=bundle_dir)


def test_concurrent_clients_are_batched_and_all_answered(server, bundle_dir, frames):
    _, (http, _, metrics) = server
    remote = RemoteClassifier(f"http://127.0.0.1:{http}", "lenet5", deadline_s=10.0)
    results, errors = {}, []

    def client(c):
        try:
            for i in range(c, len(frames), 8):
                results[i] = remote.predict(frames[i]).index
        except Exception as exc:  # noqa: BLE001 (collected and asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == len(frames)
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
    assert 'nv_inference_request_success{model="lenet5"' in text


def test_the_tensor_model_takes_preprocessed_batches(server, bundle_dir, frames):
    import tritonclient.http as api

    _, (http, _, _) = server
    local = Classifier.load(bundle_dir)
    batch = np.concatenate([local.preprocessor(f) for f in frames[:16]])
    client = api.InferenceServerClient(f"127.0.0.1:{http}")
    inp = api.InferInput("input", list(batch.shape), "FP32")
    inp.set_data_from_numpy(batch)
    result = client.infer("lenet5_tensor", [inp])
    want = local.predict_tensor(batch)
    assert result.as_numpy("index")[:, 0].tolist() == [p.index for p in want]
    assert [v.decode() for v in result.as_numpy("label")[:, 0]] == [p.label for p in want]
    topk = [[v.decode() for v in row] for row in result.as_numpy("topk_label")]
    assert topk == [[n for n, _ in p.topk] for p in want]
    np.testing.assert_allclose(result.as_numpy("topk_prob"), [[q for _, q in p.topk] for p in want], atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("logits"), np.stack([p.logits for p in want]), atol=1e-5)


class _FakeBackendUtils:
    """The part of Triton's `triton_python_backend_utils` the model file uses, outside a Triton stub."""

    class Tensor:
        def __init__(self, name, array):
            self.name, self.array = name, array

        def as_numpy(self):
            return self.array

    class InferenceResponse:
        def __init__(self, output_tensors=(), error=None):
            self.outputs, self.error = {t.name: t.array for t in output_tensors}, error

    class TritonError:
        INVALID_ARG = 3

        def __init__(self, message, code=None):
            self.message, self.code = message, code

    class Request:
        def __init__(self, inputs, requested):
            self.inputs, self.requested = inputs, requested

        def requested_output_names(self):
            return self.requested

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return _FakeBackendUtils.Tensor(name, request.inputs[name])


def _triton_model(monkeypatch, bundle_dir=None, model_input=None, config=None):
    """The model file, initialized as Triton does: with its config (a dict, as Triton passes it as JSON)."""
    import importlib.util

    from edgecls.serving.triton_schema import MODEL_FILE

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _FakeBackendUtils)
    spec = importlib.util.spec_from_file_location("edgecls_triton_model_under_test", MODEL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.TritonPythonModel()
    if config is None:
        parameters = {"bundle": str(bundle_dir), "input": model_input}
        config = {"parameters": {key: {"string_value": value} for key, value in parameters.items()}}
    model.initialize({"model_config": json.dumps(config), "model_repository": "unused", "model_version": "1"})
    return model


def test_served_model_instances_load_the_bundle_only_with_the_serving_key(monkeypatch, bundle_dir, tmp_path):
    """The key `edgecls serve` was given travels in each model's config (PEM in protobuf text) to the instances,
    which check the signature again when they load the bundle: a bundle changed after the start is refused."""
    import shutil

    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    from edgecls.bundle import MANIFEST, seal, sign_bundle
    from edgecls.errors import SignatureError
    from edgecls.serving.options import ServeOptions
    from edgecls.serving.serve import write_repository
    from edgecls.signing import generate_key

    key, pub = generate_key(tmp_path / "fleet.key")
    copy = shutil.copytree(bundle_dir, tmp_path / "bundle")
    sign_bundle(copy, key)
    write_repository(tmp_path / "models", Classifier.load(copy, public_key=pub), ServeOptions(), public_key=pub)
    text = (tmp_path / "models" / "lenet5_tensor" / "config.pbtxt").read_text()
    config = json_format.MessageToDict(
        text_format.Parse(text, model_config_pb2.ModelConfig()), preserving_proto_field_name=True
    )
    assert config["parameters"]["public_key"]["string_value"] == pub.read_text()
    assert _triton_model(monkeypatch, config=config).classifier.classes == Classifier.load(copy).classes
    manifest = json.loads((copy / MANIFEST).read_text())
    signature = manifest.pop("signature")
    manifest["classes"][0], manifest["classes"][1] = manifest["classes"][1], manifest["classes"][0]
    (copy / MANIFEST).write_text(json.dumps({**seal(manifest), "signature": signature}))  # relabelled, resealed
    with pytest.raises(SignatureError, match="does not verify"):
        _triton_model(monkeypatch, config=config)


def test_merged_requests_each_get_their_own_rows_and_only_the_outputs_they_asked_for(monkeypatch, bundle_dir, frames):
    from edgecls.serving.triton_schema import OUTPUTS

    model = _triton_model(monkeypatch, bundle_dir, "frame")
    local = Classifier.load(bundle_dir)
    asked = [["logits"], [], ["label", "topk_index"]]
    requests = [
        _FakeBackendUtils.Request({"frame": np.stack(frames[a:b])}, names)
        for (a, b), names in zip([(0, 3), (3, 4), (4, 6)], asked, strict=True)
    ]
    answers = [response.outputs for response in model.execute(requests)]
    want = [local.predict(f) for f in frames[:6]]
    assert [set(a) for a in answers] == [{"logits"}, {name for name, _ in OUTPUTS}, {"label", "topk_index"}]
    np.testing.assert_allclose(answers[0]["logits"], np.stack([w.logits for w in want[:3]]), atol=1e-5)
    assert answers[1]["index"][:, 0].tolist() == [want[3].index]
    assert answers[2]["topk_index"][:, 0].tolist() == [w.index for w in want[4:]]
    assert [v.decode() for v in answers[2]["label"][:, 0]] == [w.label for w in want[4:]]
    assert answers[1]["unknown"].dtype == bool and answers[1]["unknown"][:, 0].tolist() == [want[3].unknown]
    model.classifier.unknown_below = np.inf  # every answer below it: each row says so
    (doubtful,) = [response.outputs for response in model.execute(requests[1:2])]
    assert doubtful["unknown"].tolist() == [[True]]


def test_a_refused_frame_is_answered_alone_with_the_reason_and_its_batch_mates_still_run(
    monkeypatch, bundle_dir, frames
):
    model = _triton_model(monkeypatch, bundle_dir, "frame")
    requests = [
        _FakeBackendUtils.Request({"frame": np.stack(frames[:2])}, ["index"]),
        _FakeBackendUtils.Request({"frame": np.zeros((1, 8, 8, 2), np.uint8)}, ["index"]),
        _FakeBackendUtils.Request({"frame": np.stack([cv2.resize(frames[2], (64, 48))])}, ["index"]),
    ]
    good, bad, resized = model.execute(requests)
    local = Classifier.load(bundle_dir)
    assert good.error is None and good.outputs["index"][:, 0].tolist() == [local.predict(f).index for f in frames[:2]]
    assert resized.outputs["index"][:, 0].tolist() == [local.predict(cv2.resize(frames[2], (64, 48))).index]
    assert bad.outputs == {} and bad.error.code == _FakeBackendUtils.TritonError.INVALID_ARG
    assert "H×W×3" in bad.error.message and "Traceback" not in bad.error.message


def test_the_tensor_model_file_answers_merged_tensor_requests(monkeypatch, bundle_dir, frames):
    model = _triton_model(monkeypatch, bundle_dir, "input")
    local = Classifier.load(bundle_dir)
    batch = np.concatenate([local.preprocessor(f) for f in frames[:5]])
    first, second = model.execute(
        [
            _FakeBackendUtils.Request({"input": batch[:2]}, ["index"]),
            _FakeBackendUtils.Request({"input": batch[2:]}, []),
        ]
    )
    want = [p.index for p in local.predict_tensor(batch)]
    assert first.outputs["index"][:, 0].tolist() + second.outputs["index"][:, 0].tolist() == want


def test_remote_errors_are_typed(server):
    _, (http, _, _) = server
    with pytest.raises(RemoteError, match="unknown model"):
        RemoteClassifier(f"http://127.0.0.1:{http}", "nope").predict(np.zeros((32, 32, 3), np.uint8))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(RemoteUnavailableError, match="edgecls serve"):
        RemoteClassifier(f"http://127.0.0.1:{port}", "lenet5", deadline_s=2).predict(np.zeros((32, 32, 3), np.uint8))
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(RemoteTimeoutError, match="no answer within 300 ms"):
            RemoteClassifier(url, "lenet5", deadline_s=0.3).predict(np.zeros((32, 32, 3), np.uint8))


def test_a_bad_frame_over_grpc_is_refused_as_invalid_argument_with_the_reason(server):
    import tritonclient.grpc as api
    from tritonclient.utils import InferenceServerException

    _, (_, grpc, _) = server
    bad = api.InferInput("frame", [1, 8, 8, 2], "UINT8")
    bad.set_data_from_numpy(np.zeros((1, 8, 8, 2), np.uint8))
    with pytest.raises(InferenceServerException) as refused:
        api.InferenceServerClient(f"127.0.0.1:{grpc}").infer("lenet5", [bad])
    assert refused.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert "1|3|4]" in refused.value.message() and "Traceback" not in refused.value.message()


def _model_infer(port: int, shape, raw=(), **contents):
    """One raw gRPC ModelInfer of the frames model, built by hand as an attacker would."""
    import grpc as grpc_api
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    request = service_pb2.ModelInferRequest(model_name="lenet5", raw_input_contents=list(raw))
    tensor = request.inputs.add(name="frame", datatype="UINT8", shape=shape)
    for field, values in contents.items():
        getattr(tensor.contents, field).extend(values)
    with grpc_api.insecure_channel(f"127.0.0.1:{port}", [("grpc.max_send_message_length", -1)]) as channel:
        try:
            service_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        except grpc_api.RpcError as exc:
            return exc.code().name, exc.details()
    return "OK", ""


def test_grpc_requests_are_held_to_the_http_door_s_rules_and_the_model_keeps_serving(server, frames):
    """Before the gRPC door, [1,-2,-2,3] with 12 bytes passed Triton's byte check and killed the stub (every request
    after it failed while health said ready), a frame past --max-frame-side was classified, UINT8 contents of 300
    were wrapped to 44, two raw contents for one input passed, and only 2 GB bounded a message."""
    proc, (http, grpc, _) = server
    cases = {
        "negative dims": ([1, -2, -2, 3], {"raw": [bytes(12)]}, "INVALID_ARGUMENT", "[1, -2, -2, 3]"),
        "zero dims": ([1, 0, 8, 3], {"raw": [b""]}, "INVALID_ARGUMENT", "1..4096"),
        "past the frame side": ([1, 4100, 1, 3], {"raw": [bytes(12300)]}, "INVALID_ARGUMENT", "1..4096"),
        "past the batch": ([17, 1, 1, 3], {"raw": [bytes(51)]}, "INVALID_ARGUMENT", "[1..16,"),
        "pixel of 300": ([1, 1, 1, 3], {"uint_contents": [300, 0, 0]}, "INVALID_ARGUMENT", "0–255"),
        "two raw contents": ([1, 1, 1, 3], {"raw": [bytes(3), bytes(3)]}, "INVALID_ARGUMENT", "2 raw contents"),
        "raw and typed": ([1, 1, 1, 3], {"raw": [bytes(3)], "uint_contents": [1, 2, 3]}, "INVALID_ARGUMENT", "typed"),
        "short data": ([1, 2, 2, 3], {"raw": [bytes(11)]}, "INVALID_ARGUMENT", "12 bytes"),
        "over the message size": ([1, 4096, 4096, 4], {"raw": [bytes(4096 * 4096 * 4)]}, "RESOURCE_EXHAUSTED", ""),
    }
    for case, (shape, data, code, reason) in cases.items():
        got, details = _model_infer(grpc, shape, **data)
        assert (got, reason in details) == (code, True), (case, got, details)
    assert _model_infer(grpc, [1, 1, 1, 3], uint_contents=[255, 0, 7]) == ("OK", "")
    assert proc.poll() is None
    for url in (f"grpc://127.0.0.1:{grpc}", f"http://127.0.0.1:{http}"):
        assert RemoteClassifier(url, "lenet5", deadline_s=10.0).predict(frames[0]).label


def test_a_model_that_fails_to_load_stops_the_start_at_once_with_the_reason(bundle_dir, tmp_path, capfd):
    """Triton exits when a model's instance fails to initialize; waiting for it to become ready must end there."""
    import shutil

    from load_test import free_ports

    from edgecls.errors import ServerDiedError
    from edgecls.serving.options import ServeOptions
    from edgecls.serving.serve import write_repository
    from edgecls.serving.tritonserver import TritonServer

    copy = shutil.copytree(bundle_dir, tmp_path / "bundle")
    write_repository(tmp_path / "models", Classifier.load(copy), ServeOptions())
    shutil.rmtree(copy)  # gone before Triton's model instances load it
    http, grpc, metrics = free_ports(3)
    server = TritonServer(tmp_path / "models", tmp_path, http, ("127.0.0.1", grpc), ("127.0.0.1", metrics))
    server.start()
    try:
        started = time.monotonic()
        # Triton exits 1 after a model fails to load, or aborts (-6) when its gRPC poller trips on a descriptor that
        # teardown closed ("epoll_wait error: Bad file descriptor", seen in CI on 2026-12-07): both stop the start
        with pytest.raises(ServerDiedError, match="exited with code (1|-6) while starting"):
            server.wait_ready(timeout_s=120)
        assert time.monotonic() - started < 60
    finally:
        server.stop()
    assert "bundle directory" in capfd.readouterr().err  # the instance's error, in Triton's log


def _post(url: str, body: bytes) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body), timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_a_request_declaring_a_huge_shape_is_refused_and_the_server_stays_ready(server):
    """The 90-byte request that made tritonserver die of std::bad_alloc (issue 27) is answered 400 at the gateway."""
    proc, (http, _, _) = server
    huge = b'{"inputs":[{"name":"frame","shape":[1,100000,100000,3],"datatype":"UINT8","data":[]}]}'
    status, body = _post(f"http://127.0.0.1:{http}/v2/models/lenet5/infer", huge)
    assert status == 400 and "[1, 100000, 100000, 3]" in body and "1..4096" in body
    time.sleep(0.5)
    assert proc.poll() is None
    assert urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=5).status == 200
    assert RemoteClassifier(f"http://127.0.0.1:{http}", "lenet5", deadline_s=10).predict(
        np.zeros((32, 32, 3), np.uint8)
    )


def test_bad_input_is_answered_400_with_the_reason_and_no_traceback(server):
    _, (http, _, _) = server
    url = f"http://127.0.0.1:{http}/v2/models/lenet5"
    cases = {
        "two channels": (
            url + "/infer",
            {"name": "frame", "shape": [1, 8, 8, 2], "datatype": "UINT8", "data": [0] * 128},
        ),
        "zero pixels": (url + "/infer", {"name": "frame", "shape": [1, 0, 8, 3], "datatype": "UINT8", "data": []}),
        "NaN tensor": (
            url + "_tensor/infer",
            {"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [float("nan")] * 3072},
        ),
        "data short of its shape": (
            url + "/infer",
            {"name": "frame", "shape": [1, 8, 8, 3], "datatype": "UINT8", "data": [0]},
        ),
    }
    for case, (target, tensor) in cases.items():
        status, body = _post(target, json.dumps({"inputs": [tensor]}).encode())
        assert status == 400, case
        assert "Traceback" not in body and ".py" not in body and "input" in json.loads(body)["error"], case
    status, body = _post(f"http://127.0.0.1:{http}/v2/repository/models/lenet5/unload", b"{}")
    assert status == 404 and urllib.request.urlopen(url + "/ready", timeout=5).status == 200


def test_triton_control_apis_are_closed_to_clients(server, frames):
    """Any gRPC peer could unload the served model, list the repository, register shared memory or change the log
    settings; Triton's own model-control mode and restricted protocols refuse them, and the model keeps serving."""
    import tritonclient.grpc as grpc_api
    import tritonclient.http as http_api
    from tritonclient.utils import InferenceServerException

    _, (http, grpc, _) = server
    client = grpc_api.InferenceServerClient(f"127.0.0.1:{grpc}")
    for attempt in (
        lambda: client.unload_model("lenet5"),
        lambda: client.load_model("lenet5"),
        lambda: client.get_model_repository_index(),
        lambda: client.update_log_settings({"log_verbose_level": 1}),
        lambda: client.register_system_shared_memory("edgecls_probe", "/edgecls_probe", 64),
        lambda: client.get_trace_settings(),
    ):
        with pytest.raises(InferenceServerException):
            attempt()
    assert client.is_model_ready("lenet5") and client.is_server_ready()
    remote = RemoteClassifier(f"grpc://127.0.0.1:{grpc}", "lenet5", deadline_s=10.0)
    assert remote.predict(frames[0]).label
    assert http_api.InferenceServerClient(f"127.0.0.1:{http}").is_model_ready("lenet5")


def test_sigterm_stops_the_server_cleanly(server):
    proc, (http, _, _) = server
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert "server stopped" in proc.stdout.read()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=2)


def test_sigint_stops_a_server_that_inherited_sigint_ignored(bundle_dir):
    """A shell's background job starts with SIGINT ignored; `edgecls serve` must still stop cleanly on it."""
    import subprocess

    from load_test import free_ports, start_server

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited by the child, as `cmd &` in a script does
    try:
        proc = start_server(str(bundle_dir), "lenet5", free_ports(3), [])
    finally:
        signal.signal(signal.SIGINT, previous)
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=60) == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert "server stopped" in proc.stdout.read()


def test_ctrl_c_in_a_terminal_stops_the_server_quietly(bundle_dir):
    """A terminal's Ctrl-C signals its whole foreground process group. Only `edgecls serve` may get it: tritonserver,
    signalled again by PyTriton's stop, would exit at once with a failure and warnings in the log."""
    import os
    import subprocess

    from load_test import free_ports, start_server

    proc = start_server(str(bundle_dir), "lenet5", free_ports(3), [], process_group=0)  # its own group: a terminal
    os.killpg(proc.pid, signal.SIGINT)
    try:
        assert proc.wait(timeout=60) == 0
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    log = proc.stdout.read()
    assert "server stopped" in log
    assert log.count("Signal (2) received") == 1, log[-2000:]  # tritonserver's own line: it got one SIGINT
    for noise in ("exited with failure", "failed to stop", "Exiting immediately"):
        assert noise not in log, log[-2000:]


def test_a_signal_between_ready_and_serving_stops_cleanly(monkeypatch, bundle_dir):
    """Models answer ready before serve() waits on Triton; a SIGINT in that gap must stop the server, not escape."""
    import os

    from edgecls.serving import serve as serve_module

    events = []

    class ReadyButNotServing:
        def __init__(self, *args, **kwargs):
            pass

        def start(self):
            pass

        def wait_ready(self):
            os.kill(os.getpid(), signal.SIGINT)

        def wait(self):
            events.append("served")

        def stop(self):
            events.append("stopped")

    monkeypatch.setattr(serve_module, "TritonServer", ReadyButNotServing)
    monkeypatch.setattr(
        serve_module, "Gateway", lambda *args, **kwargs: SimpleNamespace(start=lambda: None, close=lambda: None)
    )
    try:
        serve_module.serve(str(bundle_dir), serve_module.ServeOptions())
    except KeyboardInterrupt:
        pytest.fail("the signal escaped serve() instead of stopping the server")
    assert events == ["stopped"]


def _descendants(root: int) -> list[tuple[int, str]]:
    """(pid, executable) of every process below `root`."""
    parent, command = {}, {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            parent[int(proc.name)] = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command[int(proc.name)] = (proc / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        children = [child for child, up in parent.items() if up == pid]
        found += [(child, command[child]) for child in children]
        todo += children
    return found


def test_a_triton_that_dies_unasked_makes_serve_exit_non_zero(bundle_dir):
    """A supervisor restarts only what exits non-zero: a killed Triton process must not end as a clean stop."""
    import os

    from load_test import free_ports, start_server

    proc = start_server(str(bundle_dir), "lenet5", free_ports(3), [])
    try:
        tritons = [pid for pid, command in _descendants(proc.pid) if command.endswith("tritonserver")]
        assert tritons, "no tritonserver process under edgecls serve"
        os.kill(tritons[0], signal.SIGKILL)
        assert proc.wait(timeout=90) != 0
        assert "stopped without being asked" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_model_trained_elsewhere_is_served_like_a_zoo_model(foreign_onnx_bundle, frames):
    """The bundle of a user's ONNX file (ImageNet mean/std, its own names) answers remote calls as it does in
    process."""
    from load_test import free_ports, start_server

    http, grpc, metrics = free_ports(3)
    proc = start_server(str(foreign_onnx_bundle), "tiny", [http, grpc, metrics], ["--max-batch", "8"])
    try:
        local = Classifier.load(foreign_onnx_bundle)
        remote = RemoteClassifier(f"grpc://127.0.0.1:{grpc}", "tiny", deadline_s=10.0)
        got, want = [remote.predict(f) for f in frames[:40]], [local.predict(f) for f in frames[:40]]
        assert [g.index for g in got] == [w.index for w in want]
        np.testing.assert_allclose(np.stack([g.logits for g in got]), np.stack([w.logits for w in want]), atol=1e-5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_the_load_test_s_plain_pytriton_baseline_answers_as_the_classifier_does(bundle_dir, frames):
    """tools/plain_pytriton_server.py, the server `edgecls serve` is measured against, runs the same graph."""
    from load_test import free_ports, plain_predictor, start_plain_server

    http, grpc, metrics = free_ports(3)
    proc = start_plain_server(str(bundle_dir), [http, grpc, metrics])
    try:
        local = Classifier.load(bundle_dir)
        want = [local.predict(f).index for f in frames[:40]]
        for url in (f"http://127.0.0.1:{http}", f"grpc://127.0.0.1:{grpc}"):
            predict = plain_predictor(url, local.preprocess_batch)
            assert [predict(f).index for f in frames[:40]] == want
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_the_load_test_counts_the_cpu_time_of_the_server_s_whole_process_tree():
    """A server's work happens in its children (tritonserver, the Python-backend stubs): a parent that only waits,
    with a child that burns 0.5 s of CPU, must be counted at 0.5 s."""
    from load_test import tree_cpu_s

    burn = "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\nsys.stdin.read()"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.run([sys.executable, '-c', {burn!r}])"],
        stdin=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while tree_cpu_s(parent.pid) < 0.45 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert tree_cpu_s(parent.pid) >= 0.45
    finally:
        parent.stdin.close()
        parent.wait(timeout=30)


def test_the_serving_process_frees_its_classifier_before_triton_starts(monkeypatch, bundle_dir):
    """On an 8 GB Jetson the check-load's engine and buffers must not sit beside the instances' own."""
    from edgecls.serving import serve as serve_module

    events = []

    class Server:
        def __init__(self, *args, **kwargs):
            pass

        def start(self):
            events.append("triton started")

        def wait_ready(self):
            os.kill(os.getpid(), signal.SIGINT)

        def stop(self):
            pass

    close = serve_module.Classifier.close
    monkeypatch.setattr(serve_module.Classifier, "close", lambda self: events.append("closed") or close(self))
    monkeypatch.setattr(serve_module, "TritonServer", Server)
    serve_module.serve(str(bundle_dir), serve_module.ServeOptions())
    assert events[:2] == ["closed", "triton started"]


def test_a_gpu_instance_runs_on_the_gpu_triton_gives_it():
    from edgecls.serving.triton_schema import MODEL_FILE

    spec = importlib.util.spec_from_file_location("edgecls_triton_model_device", MODEL_FILE)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("triton_python_backend_utils", _FakeBackendUtils)
    spec.loader.exec_module(module)
    gpu = {"model_instance_kind": "GPU", "model_instance_device_id": "1"}
    assert module.instance_device(gpu, "cuda:0") == "cuda:1"
    assert module.instance_device({"model_instance_kind": "CPU", "model_instance_device_id": "0"}, "cpu") == "cpu"
    assert module.instance_device(gpu, "cpu") == "cpu"  # a CPU backend stays on the CPU


def test_serve_passes_the_device_it_resolved_to_its_instances(bundle_dir, tmp_path):
    from edgecls.serving.options import ServeOptions
    from edgecls.serving.serve import write_repository

    write_repository(tmp_path / "models", Classifier.load(bundle_dir), ServeOptions())
    assert (
        'key: "device", value: { string_value: "cpu" }' in (tmp_path / "models" / "lenet5" / "config.pbtxt").read_text()
    )


def test_the_child_hook_loads_nothing_between_fork_and_exec(monkeypatch):
    """`preexec_fn` runs in a fork of a process with CUDA and ONNX Runtime threads: it may only call prctl, already
    resolved in the parent; find_library (which runs ldconfig) or dlopen there can deadlock."""
    import ctypes
    import ctypes.util

    from edgecls.serving import tritonserver

    calls = []
    libc = SimpleNamespace(prctl=lambda option, sig: calls.append((option, sig)))
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: libc)
    hook = tritonserver.die_with_parent_hook()
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: pytest.fail("find_library in the child"))
    monkeypatch.setattr(ctypes, "CDLL", lambda *a, **k: pytest.fail("dlopen in the child"))
    hook()
    assert calls == [(1, signal.SIGTERM)]


def test_triton_keeps_no_pinned_or_cuda_pool_for_tensors_it_never_gets(tmp_path):
    """Triton's defaults hold 256 MB pinned and 64 MB CUDA memory per GPU; these models pass CPU tensors only."""
    from edgecls.serving.tritonserver import TritonServer

    command = TritonServer(tmp_path, tmp_path, 1, ("127.0.0.1", 2), ("127.0.0.1", 3)).command(tmp_path)
    assert "--pinned-memory-pool-byte-size=0" in command and "--cuda-memory-pool-byte-size=0:0" in command


def test_shared_memory_is_removed_on_every_exit_and_after_a_killed_server(tmp_path, monkeypatch):
    """After a stub died, SIGTERM left /dev/shm/edgecls<pid>_* of 1-1.9 GB behind; a serve killed outright leaves them
    too: stop() removes its own, and the next start removes those of serve processes that no longer run."""
    from edgecls.serving import tritonserver

    monkeypatch.setattr(tritonserver, "SHM", tmp_path)
    dead = 2**22 + 12345  # above pid_max's default: no such process
    mine = [tmp_path / f"{tritonserver.shm_prefix(os.getpid())}{n}" for n in ("region", "lenet5_0")]
    stale, alive = tmp_path / f"edgecls{dead}_region", tmp_path / "edgecls1_region"  # pid 1 always runs
    for path in (*mine, stale, alive):
        path.write_bytes(b"x")
    server = tritonserver.TritonServer(tmp_path, tmp_path, 1, ("127.0.0.1", 2), ("127.0.0.1", 3))
    server.stop()  # never started, or Triton already gone: its memory still goes
    assert not any(p.exists() for p in mine) and stale.exists()
    assert tritonserver.remove_shared_memory() == [stale] and alive.exists()


def test_a_stub_killed_under_serve_ends_it_non_zero_naming_the_model(bundle_dir):
    """kill -9 of a model instance's stub left every request failing while health said 200, forever; now health fails
    within 5 s (serve stops) and serve exits non-zero naming the model, for a supervisor to restart it."""
    import os

    from load_test import free_ports, start_server

    ports = free_ports(3)
    proc = start_server(str(bundle_dir), "lenet5", ports, [])
    try:
        stubs = [pid for pid, command in _descendants(proc.pid) if command.endswith("triton_python_backend_stub")]
        assert len(stubs) == 2, "expected one stub per served model"
        os.kill(stubs[0], signal.SIGKILL)
        killed = time.monotonic()
        while time.monotonic() - killed < 5:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/v2/health/ready", timeout=1) as answer:
                    healthy = answer.status == 200
            except (OSError, urllib.error.HTTPError):
                healthy = False
            if not healthy:
                break
            time.sleep(0.2)
        assert not healthy, "health still answered 200 five seconds after the stub died"
        assert proc.wait(timeout=60) != 0
        log = proc.stdout.read()
        assert "the model instance serving lenet5" in log and "Traceback" not in log, log[-2000:]
        assert not list(Path("/dev/shm").glob(f"edgecls{proc.pid}_*"))  # the stubs' memory went with them
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
