"""How an INT8 graph quantizes a concatenation (`calibration.concat`), read from hand-built graphs in the two shapes
the quantizers write: ONNX Runtime's (a DQ per branch, a Q after) and ModelOpt's (branches in high precision, one Q
after)."""

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgecls.calibration.concat import concat_report


def _graph(branch_scales, out_scale):
    """Two branches (Relu of the input) into a Concat; each branch through Q/DQ at its scale when given (None: in
    float), the output through Q/DQ when out_scale is given, then a layer that reads it (as the next Inception block
    does)."""
    nodes, inits, branches = [], [], []
    zero = numpy_helper.from_array(np.array(0, np.uint8), "zero")
    for i, scale in enumerate(branch_scales):
        nodes.append(helper.make_node("Relu", ["x"], [f"r{i}"]))
        if scale is None:
            branches.append(f"r{i}")
            continue
        inits.append(numpy_helper.from_array(np.array(scale, np.float32), f"s{i}"))
        nodes += [
            helper.make_node("QuantizeLinear", [f"r{i}", f"s{i}", "zero"], [f"q{i}"]),
            helper.make_node("DequantizeLinear", [f"q{i}", f"s{i}", "zero"], [f"d{i}"]),
        ]
        branches.append(f"d{i}")
    nodes.append(helper.make_node("Concat", branches, ["cat"], axis=1))
    last = "cat"
    if out_scale is not None:
        inits.append(numpy_helper.from_array(np.array(out_scale, np.float32), "so"))
        nodes += [
            helper.make_node("QuantizeLinear", ["cat", "so", "zero"], ["qo"]),
            helper.make_node("DequantizeLinear", ["qo", "so", "zero"], ["y"]),
        ]
        last = "y"
    nodes.append(helper.make_node("Relu", [last], ["next"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])],
        [helper.make_tensor_value_info("next", TensorProto.FLOAT, None)],
        [zero, *inits],
    )
    return helper.make_model(graph)


@pytest.mark.parametrize(
    "branch_scales, out_scale, kind",
    [
        ((0.1, 0.2), 0.2, "requantized"),  # ONNX Runtime's shape: each branch its own scale
        ((0.1, 0.1), 0.1, "shared"),  # every branch at the output's scale: concatenation without arithmetic
        ((None, None), 0.1, "shared"),  # ModelOpt's shape: TensorRT moves the one Q back onto each branch
        ((0.1, None), 0.1, "requantized"),  # one branch quantized, one not
        ((None, None), None, "float"),
    ],
)
def test_each_concatenation_is_read_as_shared_requantized_or_float(branch_scales, out_scale, kind):
    assert concat_report(_graph(branch_scales, out_scale)) == {kind: 1}


def test_a_concatenation_that_makes_a_graph_output_is_not_counted():
    """The `features` output (every block's channel means) is a Concat too, directly or through a Cast (FP16 graphs):
    not branches joining, so the report leaves it out."""
    model = _graph((None, None), None)
    model.graph.node.pop()  # the layer after the Concat
    model.graph.node.append(helper.make_node("Cast", ["cat"], ["features"], to=TensorProto.FLOAT))
    model.graph.output[0].name = "features"
    assert concat_report(model) == {}
    model.graph.output[0].name = "cat"
    assert concat_report(model) == {}


def test_a_graph_without_concatenations_reports_nothing():
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    assert concat_report(helper.make_model(graph)) == {}
