"""RemoteClassifier's failures are typed errors whatever the transport raised: robot code written as
`except RemoteError: fall back to the local Classifier` must never see a client library's own exception."""

import socket
import sys
import threading

import numpy as np
import pytest

from edgecls.errors import BackendUnavailableError, RemoteError, RemoteTimeoutError, RemoteUnavailableError
from edgecls.serving import RemoteClassifier

pytest.importorskip("tritonclient.http")
FRAME = np.zeros((32, 32, 3), np.uint8)


@pytest.fixture()
def hangs_up():
    """A server that reads each request and closes the connection without answering, as a killed server's does."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            with conn:
                conn.recv(65536)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def test_a_connection_closed_without_an_answer_is_unavailable_every_time(hangs_up):
    remote = RemoteClassifier(f"http://127.0.0.1:{hangs_up}", "lenet5", deadline_s=2)
    for _ in range(5):  # the broken connection is dropped, not reused into another kind of failure
        with pytest.raises(RemoteUnavailableError, match="cannot be reached"):
            remote.predict(FRAME)


def test_grpc_to_a_server_that_hangs_up_is_a_typed_error(hangs_up):
    pytest.importorskip("tritonclient.grpc")
    with pytest.raises(RemoteError):
        RemoteClassifier(f"grpc://127.0.0.1:{hangs_up}", "lenet5", deadline_s=2).predict(FRAME)


@pytest.mark.parametrize(
    "status, kind",
    [
        ("StatusCode.DEADLINE_EXCEEDED", RemoteTimeoutError),
        ("StatusCode.UNAVAILABLE", RemoteUnavailableError),
        ("503", RemoteUnavailableError),
        (None, RemoteUnavailableError),
        ("400", RemoteError),
        ("StatusCode.INVALID_ARGUMENT", RemoteError),
    ],
)
def test_server_statuses_map_to_typed_errors(status, kind):
    from tritonclient.utils import InferenceServerException

    error = RemoteClassifier("grpc://127.0.0.1:1", "m")._classify(InferenceServerException("why", status=status))
    assert type(error) is kind


@pytest.mark.parametrize(
    "raised, kind",
    [
        ("geventhttpclient.response:HTTPConnectionClosed", RemoteUnavailableError),
        ("builtins:ConnectionResetError", RemoteUnavailableError),
        ("builtins:TimeoutError", RemoteTimeoutError),
        ("gevent:Timeout", RemoteTimeoutError),
        ("builtins:RuntimeError", RemoteError),
    ],
)
def test_transport_exceptions_map_to_typed_errors(raised, kind):
    import importlib

    module, name = raised.split(":")
    exc_type = getattr(importlib.import_module(module), name)
    exc = exc_type(1.0) if name == "Timeout" else exc_type("x")  # gevent's Timeout takes its seconds
    error = RemoteClassifier("http://127.0.0.1:1", "m")._classify(exc)
    assert type(error) is kind


def test_without_tritonclient_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tritonclient.http", None)
    with pytest.raises(BackendUnavailableError, match=r"edgecls\[remote\]"):
        RemoteClassifier("http://127.0.0.1:1", "m").predict(FRAME)


def test_robot_code_takes_either_classifier_as_a_predictor(bundle_dir):
    """Code typed against `Predictor` runs with the in-process Classifier or the remote one, unchanged."""
    from edgecls.runtime import Classifier, Predictor

    with Classifier.load(bundle_dir, precision="fp32") as local:
        assert isinstance(local, Predictor) and isinstance(RemoteClassifier("http://127.0.0.1:1"), Predictor)
    assert not isinstance(object(), Predictor)
