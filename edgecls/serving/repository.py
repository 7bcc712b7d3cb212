"""A Triton Inference Server model repository from a bundle: one Triton model per deployable file.

    DIR/<model>_<variant>/config.pbtxt
    DIR/<model>_<variant>/labels.txt          (class names: Triton's classification extension)
    DIR/<model>_<variant>/1/model.onnx | model.plan
    DIR/<model>_python/1/model.py + 1/bundle/  (raw frames in, through the edgecls runtime)

ONNX files are served by the onnxruntime backend, TensorRT engines by the tensorrt backend; the Python-backend
variant (the model file `edgecls serve` runs, `edgecls.serving.triton_model`) takes raw uint8 frames and
preprocesses them with the bundle's own policy; a copy of edgecls' Python modules sits beside its model.py, which
imports them from there (not from this machine's venv, absent in NVIDIA's Triton container), and its
requirements.txt lists the packages the container must add. It is the variant PyTriton's `tritonserver`
(which ships only the Python backend) can load. Names, dtypes and dims come from the bundle's manifest; the batch
axis is Triton's (max_batch_size, never above an engine's optimization profile), with dynamic batching on; a graph
fixed at a batch of 1 gets max_batch_size 0 and its full shape. Engines are taken only where the sealed manifest
lists them (a planted file is not served), and each config says which TensorRT and GPU built its plan: Triton's
tensorrt backend loads only plans of the TensorRT it links.
Configs are plain protobuf text; tests parse them with Triton's own ModelConfig schema.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from edgecls.bundle import MANIFEST, Bundle
from edgecls.fileio import atomic_write_bytes
from edgecls.runtime.options import DEFAULT_TOP_K
from edgecls.serving.triton_schema import MODEL_FILE, frames_input, python_model_config

_VARIANTS = (  # (bundle file, variant name, Triton backend, file name in the repository, instance kind)
    ("model.onnx", "fp32", "onnxruntime", "model.onnx", "KIND_AUTO"),
    ("model.fp16.onnx", "fp16", "onnxruntime", "model.onnx", "KIND_GPU"),
    ("model.int8.onnx", "int8_cpu", "onnxruntime", "model.onnx", "KIND_CPU"),
    ("model.fp16.engine", "trt_fp16", "tensorrt", "model.plan", "KIND_GPU"),
    ("model.int8.engine", "trt_int8", "tensorrt", "model.plan", "KIND_GPU"),
)


def triton_config(
    name: str, backend: str, bundle: Bundle, instance_kind: str, max_batch_size: int = 64, note: str = ""
) -> str:
    inp = bundle.input
    if inp.shape[0] == 1:  # no batch axis to give Triton: it sends the graph's own shape, one image per call
        max_batch_size = 0
    dims = ", ".join(str(d) for d in (inp.shape if max_batch_size == 0 else inp.shape[1:]))
    out = bundle.manifest.output or {"name": "logits"}
    out_dims = f"1, {len(bundle.classes)}" if max_batch_size == 0 else f"{len(bundle.classes)}"
    batching = (
        ""
        if max_batch_size == 0
        else f"""dynamic_batching {{
  preferred_batch_size: [ {", ".join(str(b) for b in (8, 32) if b <= max_batch_size) or max_batch_size} ]
  max_queue_delay_microseconds: 500
}}
"""
    )
    return (
        (f"# {note}\n" if note else "")
        + f"""name: "{name}"
backend: "{backend}"
max_batch_size: {max_batch_size}
input [
  {{
    name: "{inp.name}"
    data_type: TYPE_FP32
    dims: [ {dims} ]
  }}
]
output [
  {{
    name: "{out["name"]}"
    data_type: TYPE_FP32
    dims: [ {out_dims} ]
    label_filename: "labels.txt"
  }}
]
{batching}instance_group [
  {{
    count: 1
    kind: {instance_kind}
  }}
]
"""
    )


def write_triton_repository(
    bundle_dir: str | os.PathLike, repo_dir: str | os.PathLike, max_batch_size: int = 64
) -> list[Path]:
    """Write one Triton model per file the bundle has; returns the model directories written."""
    bundle = Bundle.open(bundle_dir)
    repo = Path(repo_dir)
    written = []
    names = {f.name for f in bundle.files()}
    for source, variant, backend, target, kind in _VARIANTS:
        src = bundle.root / source
        batch, note = max_batch_size, ""
        data = src.read_bytes() if source not in names and src.is_file() else None
        engine = bundle.engine_record(source, hashlib.sha256(data).hexdigest()) if data is not None else None
        if source in names:
            data = bundle.read_verified(next(f for f in bundle.files() if f.name == source))
        elif engine is None:
            continue  # engines are served only where the manifest vouches for them
        else:
            batch = min(max_batch_size, int(engine["max_batch"]))
            note = (
                f"plan built by TensorRT {engine['tensorrt']} for {engine['gpu']} sm_{engine['compute_capability']}: "
                "Triton's tensorrt backend must link that same TensorRT version, on that GPU model"
            )
        model_name = f"{bundle.manifest.model}_{variant}"
        model_dir = repo / model_name
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(model_dir / "1" / target, data)
        atomic_write_bytes(model_dir / "labels.txt", ("\n".join(bundle.classes) + "\n").encode())
        config = triton_config(model_name, backend, bundle, kind, batch, note)
        atomic_write_bytes(model_dir / "config.pbtxt", config.encode())
        written.append(model_dir)
    written.append(_write_python_model(bundle, repo, max_batch_size))
    return written


def python_config(name: str, bundle: Bundle, max_batch_size: int) -> str:
    """Raw frames in, the runtime's own choice of graph: the model `edgecls serve` runs for frames."""
    classes = len(bundle.classes)
    return python_model_config(
        name,
        frames_input(),
        min(DEFAULT_TOP_K, classes),
        classes,
        max_batch_size,
        {},
        queue_delay_us=500,
    )


REQUIREMENTS = (
    "# What edgecls' Python-backend model imports besides itself (a copy of edgecls sits beside model.py).\n"
    "# In NVIDIA's Triton container: pip install -r requirements.txt (onnxruntime-gpu for its CUDA provider).\n"
    "numpy\nopencv-python-headless\nonnxruntime\ncryptography\n"
)


def _copy_runtime_package(dst: Path) -> None:
    """edgecls' Python modules (no weights, nothing compiled) into `dst`/edgecls: the model file imports them from
    there, so the repository runs in a Triton container that has never seen this machine's venv."""
    root = Path(__file__).resolve().parents[1]
    for source in sorted(root.rglob("*.py")):
        relative = source.relative_to(root.parent)
        if "__pycache__" not in relative.parts:
            atomic_write_bytes(dst / relative, source.read_bytes())


def _write_python_model(bundle: Bundle, repo: Path, max_batch_size: int) -> Path:
    """<model>_python: the model.py above and a verified copy of the bundle's ONNX files and manifest."""
    name = f"{bundle.manifest.model}_python"
    model_dir = repo / name
    copy = model_dir / "1" / "bundle"
    copy.mkdir(parents=True, exist_ok=True)
    for entry in bundle.files():
        atomic_write_bytes(copy / entry.name, bundle.read_verified(entry))
    atomic_write_bytes(copy / MANIFEST, (bundle.root / MANIFEST).read_bytes())
    atomic_write_bytes(model_dir / "1" / "model.py", MODEL_FILE.read_bytes())
    _copy_runtime_package(model_dir / "1")
    atomic_write_bytes(model_dir / "requirements.txt", REQUIREMENTS.encode())
    atomic_write_bytes(model_dir / "labels.txt", ("\n".join(bundle.classes) + "\n").encode())
    atomic_write_bytes(model_dir / "config.pbtxt", python_config(name, bundle, max_batch_size).encode())
    return model_dir
