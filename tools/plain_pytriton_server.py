"""The baseline `tools/load_test.py` measures `edgecls serve` against: a plain PyTriton server, written as PyTriton's
own examples write one, running the ONNX graph an edgecls bundle's `Classifier` would run, with ONNX Runtime's
default session options, and answering the logits alone.

    python tools/plain_pytriton_server.py exports/mobilenet_mod --http-port 8010 --grpc-port 8011 --metrics-port 8012

The Triton model is `plain`: input `input` (the model's C×H×W float32 tensor), output `logits`.
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

from edgecls.runtime import Classifier
from edgecls.serving.options import ServeOptions
from edgecls.serving.tritonserver import server_environment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundle")
    parser.add_argument("--http-port", type=int, default=8010)
    parser.add_argument("--grpc-port", type=int, default=8011)
    parser.add_argument("--metrics-port", type=int, default=8012)
    parser.add_argument("--max-batch", type=int, default=ServeOptions.max_batch, help="as `edgecls serve`'s default")
    args = parser.parse_args()

    clf = Classifier.load(args.bundle)  # only to learn which graph edgecls runs here
    graph = str(clf.bundle.root / clf.backend.entry.name)
    spec = clf.bundle.input
    clf.close()
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    print(f"plain PyTriton server: {graph}, ONNX Runtime defaults", flush=True)

    @batch
    def infer(input):  # noqa: A002 (the Triton input's name)
        return {"logits": session.run(None, {input_name: input})[0]}

    os.environ.update(server_environment())  # libpython for the stub, as `edgecls serve` gives it
    config = TritonConfig(http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port)
    with Triton(config=config) as triton:
        triton.bind(
            model_name="plain",
            infer_func=infer,
            inputs=[Tensor(name="input", dtype=np.float32, shape=(spec.channels, spec.size, spec.size))],
            outputs=[Tensor(name="logits", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(max_batch_size=args.max_batch, batcher=DynamicBatcher()),
        )
        triton.serve()


if __name__ == "__main__":
    main()
