"""Triton Python-backend model for a bundle: copied by `edgecls export --triton` to <model>_python/1/model.py.

Takes raw uint8 frames (H×W×C, BGR) and answers with the outputs of `edgecls.runtime.triton_schema` (those of
`edgecls serve`) through the edgecls runtime: the bundle's own preprocessing and backend choice. A bad frame is
answered with the runtime's InputError message. The bundle sits beside it in 1/bundle/. Triton runs this file in an
isolated interpreter that ignores PYTHONPATH, so the directories holding edgecls and its packages come from the
model config's `python_path` parameter.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"]).get("parameters", {})
        for path in reversed(parameters.get("python_path", {}).get("string_value", "").split(os.pathsep)):
            if path and path not in sys.path:
                sys.path.insert(0, path)
        from edgecls.runtime import Classifier
        from edgecls.runtime.triton_schema import OUTPUTS, answer, label_bytes

        self.outputs, self.answer = OUTPUTS, answer
        self.classifier = Classifier.load(os.path.join(args["model_repository"], args["model_version"], "bundle"))
        self.labels = label_bytes(self.classifier.classes)

    def execute(self, requests):
        responses = []
        for request in requests:
            frames = pb_utils.get_input_tensor_by_name(request, "frame").as_numpy()
            arrays = self.answer(self.classifier, self.classifier.preprocess_batch(list(frames)), self.labels)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor(name, arrays[name].astype(np.object_) if kind == "BYTES" else arrays[name])
                        for name, kind in self.outputs
                    ]
                )
            )
        return responses
