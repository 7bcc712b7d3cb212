"""The TensorRT INT8 graph, quantized by NVIDIA ModelOpt's ONNX post-training quantization.

ModelOpt places Q/DQ pairs where TensorRT's explicit quantization fuses them (inputs of Conv and Gemm,
residual Add, pooling) and nowhere else; ONNX Runtime's quantizer, written for its own kernels, also wraps
every Clip. Calibration runs on the CPU from the same stratified training images as the CPU graph.

ModelOpt runs in a child process through its command line: when it runs it patches ONNX Runtime's calibrators
in place, after which ONNX Runtime's own quantizer (the CPU graph, the next export) fails in the same process.
The child is started before its job is known (`ModelOptChild`), so ModelOpt's imports overlap the FP32 export, and
min/max calibration runs in batches (`modelopt_child` says why the graph is the same).

The layers left unquantized are FP16, ModelOpt's default and the precision TensorRT runs them in. Measured
on mobilenet_mod (5,000 validation images, Q/DQ simulated in float by ONNX Runtime with graph
optimizations off): 83.78% with FP16, 83.50% with FP32, 84.26% for the FP32 model. ONNX Runtime's CPU graph
optimizer has no FP16 kernel to fold the FP16 scale nodes with (it warns so) and was reported to score the FP16
graph at 47.11%: a property of that optimizer, not of the graph, so export evaluates TensorRT graphs unoptimized.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
import os
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from edgecls.errors import BackendUnavailableError, ConfigError, ExportError

METHODS = {"minmax": "max", "entropy": "entropy"}  # edgecls's names (names.TENSORRT_CALIB_METHODS) → ModelOpt's
HIGH_PRECISION = "fp16"
INSTALL_HINT = "NVIDIA ModelOpt makes the TensorRT INT8 graph: pip install 'edgecls[modelopt]'"


def modelopt_available() -> bool:
    return importlib.util.find_spec("modelopt") is not None


TENSORRT8_OPSET = 17  # the newest opset TensorRT 8.6's ONNX parser reads
CALIBRATION_BATCH = 32  # at most this many images per ONNX Runtime call in ModelOpt's min/max calibration


class ModelOptChild:
    """A child process for one ModelOpt run, started before the run's input exists (`modelopt_child`): its imports
    take seconds, spent while the parent writes the FP32 graph. `close` ends it if no job came (an export that failed
    first)."""

    def __init__(self):
        self._log = tempfile.TemporaryFile("w+")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "edgecls.calibration.modelopt_child"],
            stdin=subprocess.PIPE,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def run(self, job: dict) -> tuple[int, str]:
        """Give the child its job and wait: (exit status, everything it printed)."""
        try:
            self._proc.stdin.write(json.dumps(job) + "\n")
            self._proc.stdin.close()
        except BrokenPipeError:  # it died while importing; its output says why
            pass
        code = self._proc.wait()
        self._log.seek(0)
        return code, self._log.read()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._log.close()

    def __enter__(self) -> ModelOptChild:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def quantize_for_tensorrt(
    src: Path,
    dst: Path,
    calibration: np.ndarray,
    input_name: str,
    method: str = "minmax",
    exclude_nodes: tuple[str, ...] = (),
    high_precision: str = HIGH_PRECISION,
    opset: int | None = None,
    fixed_batch: bool = False,
    child: ModelOptChild | None = None,
) -> dict:
    """Write the Q/DQ graph to `dst` (atomically) and return where the quantizers went. `child`: a `ModelOptChild`
    started earlier (else one is started now); `fixed_batch`: the graph takes one image at a time.

    `high_precision="fp32", opset=17` is the graph TensorRT 8.6 (JetPack 6.0) can build: its importer reads Q/DQ scales
    as float32 only and parses opsets up to 17. ModelOpt writes opset 19 whatever it is asked for, so the graph is
    converted down with `onnx.version_converter` (which refuses, and so fails this graph, where an operator cannot
    be)."""
    if method not in METHODS:
        raise ConfigError(
            f"ModelOpt calibrates INT8 with {' or '.join(METHODS)}, not {method!r}: "
            "pass --calib-method minmax (or entropy), or --target cpu for ONNX Runtime's quantizer alone"
        )
    if not modelopt_available():
        raise BackendUnavailableError(INSTALL_HINT)
    with (
        tempfile.TemporaryDirectory(dir=dst.parent, prefix=f".{dst.name}.") as tmp,
        child or ModelOptChild() as modelopt,
    ):
        data, staged = Path(tmp) / "calibration.npz", Path(tmp) / dst.name
        np.savez(data, **{input_name: calibration})
        argv = [
            "--onnx_path",
            str(src),
            "--quantize_mode",
            "int8",
            "--calibration_data_path",
            str(data),
            "--calibration_method",
            METHODS[method],
            "--calibration_eps",
            "cpu",
            "--high_precision_dtype",
            high_precision,
            "--output_path",
            str(staged),
            "--log_level",
            "ERROR",
        ]
        batch = 1 if method != "minmax" or fixed_batch else math.gcd(len(calibration), CALIBRATION_BATCH)
        code, printed = modelopt.run(
            {
                "argv": argv,
                "onnx_path": str(src),
                "input": input_name,
                "shape": list(calibration.shape[1:]),
                "exclude_nodes": list(exclude_nodes),
                "calibration_batch": batch,
            }
        )
        if code != 0 or not staged.is_file():
            raise ExportError(f"NVIDIA ModelOpt could not quantize {src.name} (exit {code}):\n{printed[-3000:]}")
        if opset is not None:
            _convert_opset(staged, opset)
        os.replace(staged, dst)
    return {
        "tool": f"nvidia-modelopt {importlib.metadata.version('nvidia-modelopt')}",
        "calibration_method": METHODS[method],
        "high_precision": high_precision,
        **({"opset": opset} if opset else {}),
        **qdq_placement(dst),
    }


def _convert_opset(path: Path, opset: int) -> None:
    import onnx
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(onnx.load(str(path)), opset)
        onnx.checker.check_model(converted)
    except Exception as exc:  # the converter raises plain RuntimeError/ValueError for operators it cannot move
        raise ExportError(
            f"the ModelOpt graph cannot be converted to opset {opset} for TensorRT 8.6 ({type(exc).__name__}: "
            f"{str(exc)[:300]}); build INT8 engines with TensorRT 10 or later instead"
        ) from exc
    onnx.save(converted, str(path))


def qdq_placement(path: Path) -> dict:
    """Counts of Q and DQ nodes and of the operators that consume dequantized tensors, by type."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    ops = Counter(node.op_type for node in graph.node)
    dequantized = {out for node in graph.node if node.op_type == "DequantizeLinear" for out in node.output}
    consumers = Counter(
        node.op_type
        for node in graph.node
        if node.op_type != "QuantizeLinear" and any(i in dequantized for i in node.input)
    )
    return {
        "quantize_linear": ops["QuantizeLinear"],
        "dequantize_linear": ops["DequantizeLinear"],
        "quantized_inputs_of": dict(sorted(consumers.items())),
    }
