"""The formats table: one row per file a bundle can hold. It drives `edgecls formats`, export and help."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    key: str
    file: str
    format: str
    precision: str
    target: str
    flavour: str
    needs: str
    description: str


FORMATS = (
    Format("pytorch", "model.pt", "pytorch", "fp32", "any", "", "torch", "source weights (the bench baseline)"),
    Format("onnx", "model.onnx", "onnx", "fp32", "any", "", "onnxruntime", "FP32 ONNX, dynamic batch, BN folded"),
    Format(
        "onnx-fp16",
        "model.fp16.onnx",
        "onnx",
        "fp16",
        "any",
        "fp16-io32",
        "onnxruntime",
        "FP16 weights and compute, FP32 inputs/outputs",
    ),
    Format(
        "onnx-int8",
        "model.int8.onnx",
        "onnx",
        "int8",
        "cpu",
        "u8s8",
        "onnxruntime",
        "Q/DQ INT8, unsigned activations, 7-bit weights (no saturation without VNNI): fast on x86/ARM CPUs under "
        "ONNX Runtime",
    ),
    Format(
        "onnx-int8-trt",
        "model.int8.trt.onnx",
        "onnx",
        "int8",
        "tensorrt",
        "modelopt",
        "tensorrt (nvidia-modelopt to make)",
        "Q/DQ INT8 placed by NVIDIA ModelOpt where TensorRT fuses it, FP16 elsewhere: TensorRT explicit quantization",
    ),
    Format(
        "onnx-int8-trt8",
        "model.int8.trt8.onnx",
        "onnx",
        "int8",
        "tensorrt",
        "modelopt-fp32-opset17",
        "tensorrt 8.6 (nvidia-modelopt to make)",
        "the same Q/DQ INT8 with FP32 scales and layers, opset 17: the graph TensorRT 8.6 (JetPack 6.0) parses "
        "(--tensorrt8)",
    ),
    Format(
        "sample",
        "sample.npz",
        "labelled-sample",
        "",
        "any",
        "",
        "numpy",
        "300 labelled test images (uint8 RGB, 30 per class) for `edgecls doctor` on the target: no dataset needed "
        "there",
    ),
    Format(
        "features",
        "features.npz",
        "feature-distance",
        "",
        "any",
        "",
        "numpy",
        "each block's class means and whitening: the unknown score on the graphs' `features` output "
        "(a Mahalanobis distance, Lee et al. 2018)",
    ),
    Format(
        "engine-fp16",
        "model.fp16.engine",
        "tensorrt-engine",
        "fp16",
        "tensorrt",
        "",
        "tensorrt + GPU",
        "built on the target by `edgecls build-engine`",
    ),
    Format(
        "engine-int8",
        "model.int8.engine",
        "tensorrt-engine",
        "int8",
        "tensorrt",
        "",
        "tensorrt + GPU",
        "built on the target from the ModelOpt Q/DQ graph",
    ),
)


def format_by_key(key: str) -> Format:
    return next(f for f in FORMATS if f.key == key)
