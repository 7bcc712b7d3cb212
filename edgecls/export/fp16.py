"""FP32 → FP16 ONNX with FP32 inputs and outputs, using onnxconverter-common (Microsoft's converter).

ONNX Runtime's bundled copy of the converter appends its input casts after the nodes that use them,
which `onnx.checker` rejects; onnxconverter-common inserts them in order.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from edgecls.fileio import atomic_path


def convert_fp16(src: Path, dst: Path) -> Path:
    import onnx
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # one warning per weight that underflows FP16 (it is clamped, as intended)
        model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
        onnx.checker.check_model(str(tmp))
    return dst
