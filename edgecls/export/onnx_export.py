"""PyTorch → ONNX (FP32, dynamic batch), graph clean-up, and the parity check against PyTorch."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edgecls.errors import ExportError
from edgecls.export.feature_blocks import WithFeatures, feature_blocks
from edgecls.feature_distance import OUTPUT as FEATURES_NAME
from edgecls.fileio import atomic_path

INPUT_NAME, OUTPUT_NAME = "input", "logits"
# Opset 17 is the newest that TensorRT 8.6 (JetPack 6.0) parses; newer TensorRT reads it too.
OPSET = 17


def export_onnx(model: nn.Module, path: Path, in_channels: int, size: int) -> list[int]:
    """Export with the TorchScript-based exporter (opset 17), then fold BN/constants with ORT's pre-processor; returns
    the channels of each block in the graph's second output, `features` ([] for a graph with logits alone).

    The pre-processed graph is the one every other file is derived from, so activation names in the
    Q/DQ graphs and the TensorRT calibration cache refer to tensors of model.onnx itself.
    """
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = model.eval().cpu()
    blocks = feature_blocks(model, in_channels, size)
    graph = WithFeatures(model, blocks) if blocks else model
    outputs = [OUTPUT_NAME, FEATURES_NAME] if blocks else [OUTPUT_NAME]
    dummy = torch.zeros(2, in_channels, size, size)
    with atomic_path(path) as tmp:
        raw = tmp.with_name(tmp.name + ".raw.onnx")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    graph,
                    (dummy,),
                    str(raw),
                    dynamo=False,
                    opset_version=OPSET,
                    input_names=[INPUT_NAME],
                    output_names=outputs,
                    dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *outputs)},
                    do_constant_folding=True,
                )
            quant_pre_process(str(raw), str(tmp), skip_symbolic_shape=False)
        finally:
            raw.unlink(missing_ok=True)
        onnx.checker.check_model(str(tmp), full_check=True)
    return graph.widths if blocks else []


def feature_nodes(path: Path) -> list[str]:
    """The nodes that compute the `features` output from the blocks (their means and the concatenation): both
    quantizers leave them in float, so the unknown score reads the blocks' dequantized activations, not a
    concatenation squeezed into one 8-bit scale."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    if FEATURES_NAME not in {o.name for o in graph.output}:
        return []
    producers = {out: node for node in graph.node for out in node.output}
    concat = producers[FEATURES_NAME]
    means = [producers[name] for name in concat.input if name in producers]
    return [node.name for node in (concat, *means)]


def check_parity(model: nn.Module, onnx_path: Path, batch: np.ndarray, atol: float = 1e-3, rtol: float = 1e-3) -> float:
    """Compare ONNX Runtime's logits with PyTorch's on `batch`; raise with the largest difference if they disagree."""
    import onnxruntime as ort

    with torch.no_grad():
        expected = model.eval().cpu()(torch.from_numpy(batch)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {session.get_inputs()[0].name: batch})[0]
    diff = np.abs(got - expected)
    worst = float(diff.max())
    if not np.allclose(got, expected, atol=atol, rtol=rtol):
        i = np.unravel_index(diff.argmax(), diff.shape)
        raise ExportError(
            f"{onnx_path.name} disagrees with PyTorch: max |Δ| = {worst:.3g} at image {i[0]}, class {i[1]} "
            f"(PyTorch {expected[i]:.5g}, ONNX {got[i]:.5g}; tolerance atol={atol}, rtol={rtol}). "
            "An operator exported differently; report it with the model name."
        )
    return worst
