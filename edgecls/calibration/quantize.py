"""Static Q/DQ INT8 quantization with `onnxruntime.quantization`, in the two flavours deployments need.

- S8S8 (target tensorrt): signed symmetric activations (zero point 0), symmetric per-channel weights,
  float biases; what TensorRT's explicit quantization consumes.
- U8S8 (target cpu): unsigned asymmetric activations, signed per-channel weights; what ONNX Runtime's
  x86/ARM integer kernels run fastest.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgecls.calibration.reader import ArrayCalibrationReader
from edgecls.errors import ConfigError
from edgecls.fileio import atomic_path

METHODS = ("minmax", "entropy", "percentile")


@dataclass(frozen=True)
class Flavour:
    name: str
    target: str
    signed_activations: bool


FLAVOURS = {"s8s8": Flavour("s8s8", "tensorrt", True), "u8s8": Flavour("u8s8", "cpu", False)}


def quantize(src: Path, dst: Path, reader: ArrayCalibrationReader, flavour: Flavour, method: str = "minmax",
             exclude_nodes: tuple[str, ...] = ()) -> Path:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in METHODS:
        raise ConfigError(f"--calib-method must be one of {', '.join(METHODS)}, got {method!r}")
    calibrate = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                 "percentile": CalibrationMethod.Percentile}[method]
    extra = {"WeightSymmetric": True, "ActivationSymmetric": flavour.signed_activations}
    if flavour.target == "tensorrt":
        extra["QuantizeBias"] = False
    reader.rewind()
    with atomic_path(dst) as tmp:
        quantize_static(
            str(src), str(tmp), reader, quant_format=QuantFormat.QDQ, per_channel=True,
            activation_type=QuantType.QInt8 if flavour.signed_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=calibrate, nodes_to_exclude=list(exclude_nodes),
            extra_options=extra,
        )
    return dst
