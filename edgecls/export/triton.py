"""A Triton Inference Server model repository from a bundle: one Triton model per deployable file.

    DIR/<model>_<variant>/config.pbtxt
    DIR/<model>_<variant>/labels.txt          (class names: Triton's classification extension)
    DIR/<model>_<variant>/1/model.onnx | model.plan

ONNX files are served by the onnxruntime backend, TensorRT engines by the tensorrt backend. Names,
dtypes and dims come from the bundle's manifest; the batch axis is Triton's (max_batch_size), with dynamic
batching on. Configs are plain protobuf text; tests parse them with Triton's own ModelConfig schema.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgecls.bundle import Bundle
from edgecls.fileio import atomic_path, atomic_write_bytes

_VARIANTS = (  # (bundle file, variant name, Triton backend, file name in the repository, instance kind)
    ("model.onnx", "fp32", "onnxruntime", "model.onnx", "KIND_AUTO"),
    ("model.fp16.onnx", "fp16", "onnxruntime", "model.onnx", "KIND_GPU"),
    ("model.int8.onnx", "int8_cpu", "onnxruntime", "model.onnx", "KIND_CPU"),
    ("model.fp16.engine", "trt_fp16", "tensorrt", "model.plan", "KIND_GPU"),
    ("model.int8.engine", "trt_int8", "tensorrt", "model.plan", "KIND_GPU"),
)


def triton_config(name: str, backend: str, bundle: Bundle, instance_kind: str, max_batch_size: int = 64) -> str:
    inp = bundle.input
    dims = ", ".join(str(d) for d in inp["shape"][1:])
    out = bundle.manifest.get("output", {"name": "logits"})
    return f"""name: "{name}"
backend: "{backend}"
max_batch_size: {max_batch_size}
input [
  {{
    name: "{inp['name']}"
    data_type: TYPE_FP32
    dims: [ {dims} ]
  }}
]
output [
  {{
    name: "{out['name']}"
    data_type: TYPE_FP32
    dims: [ {len(bundle.classes)} ]
    label_filename: "labels.txt"
  }}
]
dynamic_batching {{
  preferred_batch_size: [ 8, 32 ]
  max_queue_delay_microseconds: 500
}}
instance_group [
  {{
    count: 1
    kind: {instance_kind}
  }}
]
"""


def write_triton_repository(bundle_dir: str | os.PathLike, repo_dir: str | os.PathLike, max_batch_size: int = 64) -> list[Path]:
    """Write one Triton model per file the bundle has; returns the model directories written."""
    bundle = Bundle.open(bundle_dir)
    repo = Path(repo_dir)
    written = []
    names = {f.name for f in bundle.files()}
    for source, variant, backend, target, kind in _VARIANTS:
        src = bundle.root / source
        if source in names:
            bundle.verified_path(next(f for f in bundle.files() if f.name == source))
        elif not src.is_file():  # engines are not manifest files: they are built on the target
            continue
        model_name = f"{bundle.manifest['model']}_{variant}"
        model_dir = repo / model_name
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        with atomic_path(model_dir / "1" / target) as tmp:
            shutil.copyfile(src, tmp)
        atomic_write_bytes(model_dir / "labels.txt", ("\n".join(bundle.classes) + "\n").encode())
        config = triton_config(model_name, backend, bundle, kind, max_batch_size)
        atomic_write_bytes(model_dir / "config.pbtxt", config.encode())
        written.append(model_dir)
    return written
