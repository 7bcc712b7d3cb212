"""A TensorRT calibration cache derived from the S8S8 Q/DQ graph's activation scales.

TensorRT versions that still calibrate implicitly read a text cache: a header line, then
`tensor_name: <scale as big-endian float32 hex>` per tensor. The scales are exactly those ONNX Runtime
calibrated for the S8S8 graph, so implicit and explicit INT8 engines share one calibration. The header
written here is rewritten for the installed TensorRT version by `edgecls build-engine`.
"""

from __future__ import annotations

import struct
from pathlib import Path

from edgecls.fileio import atomic_write_bytes

HEADER = "TRT-8601-EntropyCalibration2"


def activation_scales(qdq_path: Path) -> dict[str, float]:
    """Scale of every activation QuantizeLinear in a Q/DQ graph, keyed by the tensor it quantizes."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(qdq_path)).graph
    initializers = {init.name: init for init in graph.initializer}
    scales = {}
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in initializers and node.input[1] in initializers:
            value = numpy_helper.to_array(initializers[node.input[1]])
            if value.size == 1:
                scales[node.input[0]] = float(value.reshape(()))
    return scales


def write_tensorrt_cache(qdq_path: Path, dst: Path) -> Path:
    lines = [HEADER] + [f"{name}: {struct.pack('>f', scale).hex()}" for name, scale in activation_scales(qdq_path).items()]
    return atomic_write_bytes(dst, ("\n".join(lines) + "\n").encode())
