"""Triton Python-backend model for a bundle: copied by `edgecls export --triton` to <model>_python/1/model.py.

Takes raw uint8 frames (H×W×C, BGR) and answers label, index, confidence and logits through the edgecls runtime
(the bundle's own preprocessing and backend choice). The bundle sits beside it in 1/bundle/. Triton runs this
file in an isolated interpreter that ignores PYTHONPATH, so the directories holding edgecls and its packages
come from the model config's `python_path` parameter.
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

        self.classifier = Classifier.load(os.path.join(args["model_repository"], args["model_version"], "bundle"))

    def execute(self, requests):
        responses = []
        for request in requests:
            frames = pb_utils.get_input_tensor_by_name(request, "frame").as_numpy()
            preds = self.classifier.predict_batch(list(frames))
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("label", np.array([[p.label.encode()] for p in preds], dtype=np.object_)),
                pb_utils.Tensor("index", np.array([[p.index] for p in preds], dtype=np.int64)),
                pb_utils.Tensor("confidence", np.array([[p.confidence] for p in preds], dtype=np.float32)),
                pb_utils.Tensor("logits", np.stack([p.logits for p in preds]).astype(np.float32)),
            ]))
        return responses
