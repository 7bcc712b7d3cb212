"""`RemoteClassifier`: `Classifier`'s predict interface, answered by an `edgecls serve` over the network.

    clf = RemoteClassifier("http://gpu-box:8000", "mobilenet_mod", deadline_s=0.05)   # or Classifier.load(...)
    pred = clf.predict(frame)

Frames travel as raw uint8 and are preprocessed on the server by the bundle's own policy; or, given the bundle
(`preprocess_with="exports/mobilenet_mod"`), they are preprocessed here exactly as `Classifier` does and only the
model's input goes to the server's `<model>_tensor` (a 640×480 frame is 0.9 MB, a 3×32×32 tensor 12 KB), and the
label names are not sent back (the bundle has them). The confidences are always the server's: its graph's own
calibration (`edgecls.confidence`) made them. Each request has a deadline;
failures raise typed errors (`RemoteTimeoutError`, `RemoteUnavailableError`, `RemoteError`), so robot code can fall
back to a local Classifier. One Triton client per calling thread: tritonclient's clients are not thread-safe.
`http://` uses Triton's HTTP/REST API, `grpc://` its gRPC API.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence

import numpy as np

from edgecls.bundle import Bundle
from edgecls.errors import BackendUnavailableError, InputError, RemoteError, RemoteTimeoutError, RemoteUnavailableError
from edgecls.imaging import COLORS, check_frame
from edgecls.runtime.classifier import Prediction
from edgecls.runtime.preprocess import Preprocessor

# a Prediction's fields (the top-1 is the top-k's first)
ANSWER = ("topk_index", "topk_label", "topk_prob", "logits", "unknown")


class RemoteClassifier:
    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        model: str = "mobilenet_mod",
        deadline_s: float = 1.0,
        preprocess_with: str | os.PathLike | None = None,
        public_key=None,
    ):
        if deadline_s <= 0:
            raise InputError(f"deadline_s must be > 0, got {deadline_s}")
        scheme, _, address = url.partition("://")
        if scheme not in ("http", "grpc") or not address:
            raise InputError(f"url must look like http://HOST:8000 or grpc://HOST:8001, got {url!r}")
        self.url, self.model, self.deadline_s = url, model, deadline_s
        self.scheme, self.address = scheme, address
        self.preprocessor, self.classes = None, None
        if preprocess_with is not None:
            bundle = Bundle.open(preprocess_with, public_key=public_key)
            if bundle.manifest.model != model:
                raise InputError(
                    f"preprocess_with is a bundle of {bundle.manifest.model!r}, but the served model asked for "
                    f"is {model!r}: give the bundle the server serves"
                )
            self.preprocessor, self.classes = Preprocessor(bundle.input, bundle.preprocess), bundle.classes
        self._local = threading.local()

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            try:
                if self.scheme == "http":
                    import tritonclient.http as api

                    client = api.InferenceServerClient(
                        self.address, connection_timeout=self.deadline_s, network_timeout=self.deadline_s
                    )
                else:
                    import tritonclient.grpc as api

                    client = api.InferenceServerClient(self.address)
            except ImportError as exc:
                raise BackendUnavailableError(
                    f"RemoteClassifier needs tritonclient ({exc.name} is missing): pip install 'edgecls[remote]'"
                ) from exc
            self._local.client, self._local.api = client, api
        return client, self._local.api

    def predict(self, frame: np.ndarray, color: str = "bgr") -> Prediction:
        return self.predict_batch([frame], color)[0]

    def predict_batch(self, frames: Sequence[np.ndarray], color: str = "bgr") -> list[Prediction]:
        """Frames of one size in one request (the server batches requests of many clients on its own)."""
        if not isinstance(frames, list | tuple | np.ndarray) or len(frames) == 0:
            raise InputError("predict_batch takes a non-empty list of frames (numpy arrays)")
        if color not in COLORS:
            raise InputError(f"color must be one of {COLORS}, got {color!r}")
        if self.preprocessor is not None:
            return self._answer(np.concatenate([self.preprocessor(f, color) for f in frames]))
        checked = [check_frame(f) for f in frames]
        checked = [f[..., None] if f.ndim == 2 else (f[..., :3] if f.shape[2] == 4 else f) for f in checked]
        if color == "rgb":
            checked = [f[..., ::-1] if f.shape[2] == 3 else f for f in checked]
        if len({f.shape for f in checked}) > 1:
            raise InputError("frames in one predict_batch call must share one size; send others in their own call")
        return self._answer(np.ascontiguousarray(np.stack(checked)))

    def _answer(self, batch: np.ndarray) -> list[Prediction]:
        started = time.perf_counter()
        result = self._infer(batch)
        elapsed_ms = (time.perf_counter() - started) * 1e3 / len(batch)
        order, probs = result["topk_index"], result["topk_prob"]  # the server's calibrated confidence
        if self.classes is None:
            names = [[name.decode() for name in row] for row in result["topk_label"]]
        else:
            names = [[self.classes[i] for i in row] for row in order.tolist()]
        return [
            Prediction(
                label=names[i][0],
                index=int(order[i, 0]),
                confidence=float(probs[i, 0]),
                topk=tuple(zip(names[i], probs[i].tolist(), strict=True)),
                timings_ms={"remote": elapsed_ms},
                logits=result["logits"][i],
                unknown=bool(result["unknown"][i, 0]),
            )
            for i in range(len(batch))
        ]

    def _infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        client, api = self._client()
        tensors = batch.dtype == np.float32  # preprocessed here: the server's <model>_tensor takes the model's input
        model = f"{self.model}_tensor" if tensors else self.model
        inp = api.InferInput("input" if tensors else "frame", list(batch.shape), "FP32" if tensors else "UINT8")
        inp.set_data_from_numpy(batch)
        wanted = ANSWER if self.classes is None else tuple(name for name in ANSWER if name != "topk_label")
        outputs = [api.InferRequestedOutput(name) for name in wanted]
        started = time.perf_counter()
        try:
            if self.scheme == "grpc":
                response = client.infer(model, [inp], outputs=outputs, client_timeout=self.deadline_s)
            else:
                response = client.infer(model, [inp], outputs=outputs)
        except BaseException as exc:  # gevent's Timeout derives from BaseException
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            error = self._classify(exc)
            if isinstance(error, RemoteUnavailableError | RemoteTimeoutError):
                self._local.client = None  # a broken or timed-out connection is never reused
            raise error from exc
        elapsed = time.perf_counter() - started
        if elapsed > self.deadline_s:  # HTTP's timeouts bound each socket operation, not the whole call
            raise RemoteTimeoutError(
                f"{self.url} model {self.model!r}: answered in {elapsed * 1e3:.0f} ms, past the "
                f"{self.deadline_s * 1e3:.0f} ms deadline"
            )
        return {name: response.as_numpy(name) for name in wanted}

    def _classify(self, exc: BaseException) -> RemoteError:
        """The typed error for whatever either protocol's client raised: by gRPC status code or HTTP status, and by
        exception type for transport failures (sockets, geventhttpclient's closed connections, gevent's timeouts)."""
        from http.client import HTTPException

        from tritonclient.utils import InferenceServerException

        where = f"{self.url} model {self.model!r}"
        timed_out = RemoteTimeoutError(f"{where}: no answer within {self.deadline_s * 1e3:.0f} ms")
        unreachable = f"{where} cannot be reached ({type(exc).__name__}: {exc}); is `edgecls serve` running?"
        if isinstance(exc, InferenceServerException):
            status = str(exc.status() or "")
            if status == "StatusCode.DEADLINE_EXCEEDED":
                return timed_out
            if status in ("StatusCode.UNAVAILABLE", "StatusCode.CANCELLED", "503") or not status:
                return RemoteUnavailableError(unreachable)  # no status: the HTTP client failed before any answer
            return RemoteError(f"{where} refused the request ({status}): {exc.message()}")
        if isinstance(exc, TimeoutError) or type(exc).__name__ == "Timeout":
            return timed_out
        if isinstance(exc, OSError | HTTPException):
            return RemoteUnavailableError(unreachable)
        return RemoteError(f"{where}: the client failed ({type(exc).__name__}: {exc})")
