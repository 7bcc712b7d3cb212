"""How an INT8 graph quantizes its concatenations: one scale shared by every branch, or each branch requantized.

An Inception block concatenates four branches. An INT8 kernel concatenates without arithmetic only when every branch
carries the scale of the output; otherwise each branch is requantized (rescaled and rounded again) on its way in.
The two quantizers edgecls runs place Q/DQ differently, each for its own target:
- ModelOpt (TensorRT) leaves Concat out of its Q/DQ registry: the branches meet in high precision and one Q/DQ on the
  concatenation's output feeds the next layers. TensorRT moves that Q back through the Concat onto each branch, so
  all share its scale (`shared` below).
- ONNX Runtime's quantizer wraps Concat itself: a DQ on each input with that branch's own scale and a Q on the
  output, which its CPU kernels fuse into QLinearConcat, requantizing every branch whose scale differs
  (`requantized`).

`concat_report` reads this from the graph, so the bundle can say which one it holds.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from onnx import numpy_helper


def _scale(node, tensors: dict) -> float | None:
    """The scalar scale of a QuantizeLinear/DequantizeLinear node (None for per-channel or computed scales); only this
    one tensor is read, not the graph's weights."""
    tensor = tensors.get(node.input[1]) if len(node.input) > 1 else None
    value = numpy_helper.to_array(tensor) if tensor is not None else None
    return float(value) if value is not None and np.size(value) == 1 else None


def concat_kind(node, producers: dict, consumers: dict, values: dict) -> str:
    """`shared` (one scale for every branch and the output, or branches in high precision and one Q after),
    `requantized` (branches arrive with scales that differ from the output's), `float` (no Q/DQ around it)."""
    inputs = [producers.get(name) for name in node.input]
    in_scales = [_scale(p, values) for p in inputs if p is not None and p.op_type == "DequantizeLinear"]
    out_scales = {_scale(c, values) for c in consumers.get(node.output[0], []) if c.op_type == "QuantizeLinear"} - {
        None
    }
    if not in_scales and not out_scales:
        return "float"
    if not in_scales:
        return "shared"
    if len(in_scales) == len(inputs) and len(set(in_scales) | out_scales) == 1:
        return "shared"
    return "requantized"


def concat_report(model) -> dict[str, int]:
    """How many Concat nodes of `model` (an onnx.ModelProto) are of each kind; {} when it has none. A Concat that
    makes a graph output (directly or through a Cast) is not a joining of branches (the `features` output's channel
    means) and is not counted."""
    graph = model.graph
    outputs = {output.name for output in graph.output}
    outputs |= {node.input[0] for node in graph.node if node.op_type == "Cast" and node.output[0] in outputs}
    producers = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    values = {init.name: init for init in graph.initializer}
    values |= {node.output[0]: node.attribute[0].t for node in graph.node if node.op_type == "Constant"}
    return dict(
        Counter(
            concat_kind(n, producers, consumers, values)
            for n in graph.node
            if n.op_type == "Concat" and n.output[0] not in outputs
        )
    )
