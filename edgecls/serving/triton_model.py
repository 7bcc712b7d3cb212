"""The Triton Python-backend model that runs a bundle: `edgecls serve`'s two models are this file, and
`edgecls export --triton` copies it to <model>_python/1/model.py.

Why a Python-backend model and not PyTriton's binding: Triton runs this file in its own stub process per model
instance, which runs the bundle's `Classifier` itself. A PyTriton-bound function sits one hop further, in the
serving process, behind the stub's asyncio loop, a ZeroMQ round trip and a shared-memory tensor store, and every
instance shares that process's GIL. Measured with `tools/load_test.py` (8 clients, 2 cores): docs/serving.md.

The model config's parameters say what to load:
- `input`: `frame` (raw uint8 H×W×C frames, preprocessed here by the bundle's own policy, as `Classifier.predict`)
  or `input` (ready N×C×H×W float32 tensors, the bundle's normalization already applied);
- `bundle`: the bundle directory (default: `bundle/` beside this file); `backend`, `precision`, `device`, `threads`,
  `top_k`: `Classifier.load`'s (a KIND_GPU instance takes the GPU Triton gives it, `instance_device`);
  `public_key`: PEM text of the key the bundle must be signed by ('' for none; absent: $EDGECLS_PUBLIC_KEY's);
- `python_path`: where edgecls and its packages live (`edgecls serve`: this machine's venv). Triton runs this file
  in an isolated interpreter that ignores PYTHONPATH and virtual environments. `export --triton` writes none and
  puts a copy of edgecls beside this file instead, which is imported first.

Each call gets the requests the dynamic batcher merged, runs them as one batch and answers each with
the outputs of `edgecls.serving.triton_schema` it asked for. A request the runtime refuses (a bad frame) is answered
alone, with the runtime's InputError message as INVALID_ARG, and the other requests of the batch still run.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


def _parameters(model_config: dict) -> dict[str, str]:
    return {key: value.get("string_value", "") for key, value in model_config.get("parameters", {}).items()}


def _public_key(pem: str | None):
    """`Classifier.load`'s public_key: PEM bytes; '' means no key asked for; absent means $EDGECLS_PUBLIC_KEY's."""
    if pem is None:
        return None
    return pem.encode() if pem else False


def instance_device(args: dict, device: str) -> str:
    """The device this instance runs on: Triton's GPU for a KIND_GPU instance (one per GPU of its instance group,
    `model_instance_device_id`) where the runtime resolved a CUDA device, else the resolved device as it is."""
    if args.get("model_instance_kind") == "GPU" and device.startswith("cuda"):
        return f"cuda:{int(args.get('model_instance_device_id', 0))}"
    return device


class TritonPythonModel:
    def initialize(self, args):
        parameters = _parameters(json.loads(args["model_config"]))
        beside = os.path.dirname(os.path.abspath(__file__))  # `export --triton` puts a copy of edgecls here
        paths = [beside] if os.path.isdir(os.path.join(beside, "edgecls")) else []
        for path in reversed(paths + parameters.get("python_path", "").split(os.pathsep)):
            if path and path not in sys.path:
                sys.path.insert(0, path)
        from edgecls.errors import InputError
        from edgecls.runtime import Classifier
        from edgecls.runtime.options import DEFAULT_TOP_K
        from edgecls.serving.triton_schema import OUTPUTS, answer, label_bytes

        bundle = parameters.get("bundle") or os.path.join(args["model_repository"], args["model_version"], "bundle")
        threads = parameters.get("threads", "")
        self.classifier = Classifier.load(
            bundle,
            parameters.get("backend", "auto"),
            parameters.get("precision", "auto"),
            instance_device(args, parameters.get("device", "auto")),
            top_k=int(parameters.get("top_k", DEFAULT_TOP_K)),
            threads=int(threads) if threads else None,
            public_key=_public_key(parameters.get("public_key")),
        )
        self.input = parameters.get("input", "frame")
        self.bytes_outputs = {name for name, kind in OUTPUTS if kind == "BYTES"}
        self.all_outputs = [name for name, _ in OUTPUTS]
        self.answer, self.labels, self.input_error = answer, label_bytes(self.classifier.classes), InputError

    def _prepare(self, inputs: list[np.ndarray]) -> np.ndarray:
        """The model's input for all requests: frames one by one (their sizes may differ), tensors as they are."""
        if self.input == "frame":
            return self.classifier.preprocess_batch([frame for items in inputs for frame in items])
        return np.ascontiguousarray(np.concatenate(inputs), dtype=np.float32)

    def _respond(self, requests, inputs) -> list:
        outputs = self.answer(self.classifier, self._prepare(inputs), self.labels)
        responses, start = [], 0
        for request, items in zip(requests, inputs, strict=True):
            end = start + len(items)
            tensors = []
            for name in request.requested_output_names() or self.all_outputs:
                rows = outputs[name][start:end]
                tensors.append(pb_utils.Tensor(name, rows.astype(np.object_) if name in self.bytes_outputs else rows))
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = end
        return responses

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(request, self.input).as_numpy() for request in requests]
        try:
            return self._respond(requests, inputs)
        except self.input_error as exc:
            if len(requests) == 1:
                return [self._refused(exc)]
        return [self._answer_alone(request, items) for request, items in zip(requests, inputs, strict=True)]

    def _answer_alone(self, request, items):
        try:
            return self._respond([request], [items])[0]
        except self.input_error as exc:
            return self._refused(exc)

    @staticmethod
    def _refused(exc) -> "pb_utils.InferenceResponse":
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG))

    def finalize(self):
        self.classifier.close()
