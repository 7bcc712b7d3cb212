"""A Triton Inference Server model repository from a bundle: one Triton model per deployable file.

    DIR/<model>_<variant>/config.pbtxt
    DIR/<model>_<variant>/labels.txt          (class names: Triton's classification extension)
    DIR/<model>_<variant>/1/model.onnx | model.plan
    DIR/<model>_python/1/model.py + 1/bundle/  (raw frames in, through the edgecls runtime)

ONNX files are served by the onnxruntime backend, TensorRT engines by the tensorrt backend; the Python-backend
variant takes raw uint8 frames and preprocesses them with the bundle's own policy; its config names the directories
of this environment's edgecls (`python_path`), which the server's isolated interpreter then imports. It is the
variant PyTriton's `tritonserver` (which ships only the Python backend) can load. Names,
dtypes and dims come from the bundle's manifest; the batch axis is Triton's (max_batch_size), with dynamic
batching on. Configs are plain protobuf text; tests parse them with Triton's own ModelConfig schema.
"""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

import edgecls
from edgecls.bundle import MANIFEST, Bundle
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
    written.append(_write_python_model(bundle, repo, max_batch_size))
    return written


def python_path() -> str:
    """Where this environment's edgecls and packages live: what the Python-backend model puts on its sys.path."""
    paths = [str(Path(edgecls.__file__).parents[1]), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
    return os.pathsep.join(dict.fromkeys(paths))


def python_config(name: str, bundle: Bundle, max_batch_size: int) -> str:
    return f"""name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
input [
  {{
    name: "frame"
    data_type: TYPE_UINT8
    dims: [ -1, -1, -1 ]
  }}
]
output [
  {{ name: "label", data_type: TYPE_STRING, dims: [ 1 ] }},
  {{ name: "index", data_type: TYPE_INT64, dims: [ 1 ] }},
  {{ name: "confidence", data_type: TYPE_FP32, dims: [ 1 ] }},
  {{ name: "logits", data_type: TYPE_FP32, dims: [ {len(bundle.classes)} ], label_filename: "labels.txt" }}
]
dynamic_batching {{
  max_queue_delay_microseconds: 500
}}
instance_group [
  {{
    count: 1
    kind: KIND_CPU
  }}
]
parameters {{
  key: "python_path"
  value: {{ string_value: "{python_path()}" }}
}}
"""


def _write_python_model(bundle: Bundle, repo: Path, max_batch_size: int) -> Path:
    """<model>_python: the model.py above and a verified copy of the bundle's ONNX files and manifest."""
    name = f"{bundle.manifest['model']}_python"
    model_dir = repo / name
    copy = model_dir / "1" / "bundle"
    copy.mkdir(parents=True, exist_ok=True)
    for entry in bundle.files():
        with atomic_path(copy / entry.name) as tmp:
            shutil.copyfile(bundle.verified_path(entry), tmp)
    atomic_write_bytes(copy / MANIFEST, (bundle.root / MANIFEST).read_bytes())
    atomic_write_bytes(model_dir / "1" / "model.py", (Path(__file__).parent / "triton_model.py").read_bytes())
    atomic_write_bytes(model_dir / "labels.txt", ("\n".join(bundle.classes) + "\n").encode())
    atomic_write_bytes(model_dir / "config.pbtxt", python_config(name, bundle, max_batch_size).encode())
    return model_dir
