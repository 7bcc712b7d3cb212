"""A user's ONNX file → the bundle's `model.onnx`: one NCHW float input named `input`, one output `logits`, a dynamic
batch axis where the graph allows it, opset ≥ 13, and the same clean-up as edgecls's own exports.

Files exported elsewhere are often fixed at a batch of 1. Marking the batch axis dynamic is kept only when ONNX
Runtime then runs a batch of several images and gives each the answer it gets alone; a graph that bakes the batch
into a Reshape fails that check and stays at 1, and every backend then runs it image by image (the manifest's
input shape says which).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecls.errors import ConfigError, ExportError
from edgecls.export.onnx_export import INPUT_NAME, OUTPUT_NAME
from edgecls.fileio import atomic_path

MIN_OPSET = 13  # per-channel INT8 weights (ONNX Runtime's quantizer, ModelOpt) need QuantizeLinear's axis


@dataclass(frozen=True)
class OnnxInput:
    name: str
    dims: tuple  # int for fixed dims, str for symbolic ones
    channels: int

    @property
    def size(self) -> int | None:
        h, w = self.dims[2], self.dims[3]
        return h if isinstance(h, int) and h > 0 and h == w else None

    @property
    def batch(self) -> int | str:
        return self.dims[0]

    @property
    def shape_text(self) -> str:
        return "×".join(str(d) for d in self.dims)


def _dims(value_info) -> tuple:
    return tuple(
        d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in value_info.type.tensor_type.shape.dim
    )


def inspect_input(path: Path) -> OnnxInput:
    """The graph's one image input, or a `ConfigError` naming the input edgecls cannot feed and why."""
    import onnx

    if not path.is_file():
        raise ConfigError(f"ONNX file {path} not found")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ConfigError(f"{path} is not a readable ONNX file ({type(exc).__name__}: {str(exc)[:200]})") from exc
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]  # IR < 4 lists weights as inputs too
    if len(inputs) != 1:
        raise ConfigError(
            f"{path.name} has {len(inputs)} inputs ({', '.join(repr(i.name) for i in inputs)}); edgecls feeds "
            "classifiers with one image input"
        )
    if len(graph.output) != 1:
        raise ConfigError(
            f"{path.name} has {len(graph.output)} outputs ({', '.join(repr(o.name) for o in graph.output)}); "
            "edgecls reads classifiers with one output of class scores"
        )
    inp = inputs[0]
    elem = inp.type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise ConfigError(
            f"{path.name}'s input {inp.name!r} is {onnx.TensorProto.DataType.Name(elem)}; edgecls feeds "
            "float32 normalized images: export the model with a float input"
        )
    dims = _dims(inp)
    if len(dims) != 4:
        raise ConfigError(
            f"{path.name}'s input {inp.name!r} has shape {'×'.join(map(str, dims))}; edgecls feeds N×C×H×W images"
        )
    if dims[1] not in (1, 3):
        layout = " (NHWC: channels last)" if dims[3] in (1, 3) else ""
        raise ConfigError(
            f"{path.name}'s input {inp.name!r} is {'×'.join(map(str, dims))}{layout}; edgecls feeds N×C×H×W "
            "with 1 or 3 channels: export the model channels-first (NCHW)"
        )
    if isinstance(dims[0], int) and dims[0] > 1:
        raise ConfigError(
            f"{path.name}'s input {inp.name!r} has a fixed batch of {dims[0]}; export it with batch 1 or a "
            "dynamic batch axis"
        )
    return OnnxInput(inp.name, dims, int(dims[1]))


def import_onnx(src: Path, dst: Path, size: int) -> dict:
    """Write `dst` from the user's `src` (atomically) and return what was done: {"batch", "opset", "steps"}."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    found = inspect_input(src)
    model = onnx.load(str(src))
    steps = []
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset < MIN_OPSET:
        try:
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as exc:  # the converter raises plain RuntimeError/ValueError for operators it cannot move
            raise ExportError(
                f"{src.name} is opset {opset}; converting it to {MIN_OPSET} (per-channel INT8 needs it) failed: "
                f"{str(exc)[:300]}. Re-export it from its framework at opset {MIN_OPSET}–17"
            ) from exc
        steps.append(f"opset {opset} → {MIN_OPSET} (onnx.version_converter)")
    _rename(model.graph, found.name, INPUT_NAME, is_input=True)
    _rename(model.graph, model.graph.output[0].name, OUTPUT_NAME, is_input=False)
    steps.append(f"input {found.name!r} → {INPUT_NAME!r}, output → {OUTPUT_NAME!r}")
    fixed = found.batch == 1
    if fixed:
        candidate = _with_dynamic_batch(model)
        if _batches_agree(candidate, model, found.channels, size):
            model, fixed = candidate, False
            steps.append("batch axis made dynamic (a batch of 3 gives each image its batch-1 answer)")
        else:
            steps.append(
                "batch fixed at 1: the graph does not run batches correctly with a dynamic axis; every backend "
                "runs it image by image"
            )
    with atomic_path(dst) as tmp:
        raw = tmp.with_name(tmp.name + ".raw.onnx")
        try:
            onnx.save(model, str(raw))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                quant_pre_process(str(raw), str(tmp), skip_symbolic_shape=False)
        except Exception as exc:
            raise ExportError(
                f"{src.name} could not be prepared for quantization by ONNX Runtime's pre-processor "
                f"({type(exc).__name__}: {str(exc)[:300]})"
            ) from exc
        finally:
            raw.unlink(missing_ok=True)
        onnx.checker.check_model(str(tmp), full_check=True)
    steps.append("shape inference and graph optimization (onnxruntime quant_pre_process), onnx.checker")
    return {"batch": 1 if fixed else "dynamic", "opset": max(opset, MIN_OPSET), "source_opset": opset, "steps": steps}


def _rename(graph, old: str, new: str, is_input: bool) -> None:
    if old == new:
        return
    taken = {t for n in graph.node for t in (*n.input, *n.output)} | {t.name for t in graph.initializer}
    if new in taken:
        raise ExportError(f"the graph already has a tensor named {new!r}; rename it in the source model")
    for node in graph.node:
        node.input[:] = [new if t == old else t for t in node.input]
        node.output[:] = [new if t == old else t for t in node.output]
    for value in graph.input if is_input else graph.output:
        if value.name == old:
            value.name = new


def _with_dynamic_batch(model):
    import onnx

    candidate = onnx.ModelProto()
    candidate.CopyFrom(model)
    for value in (*candidate.graph.input, *candidate.graph.output):
        if value.type.tensor_type.shape.dim:
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del candidate.graph.value_info[:]  # intermediate shapes recorded at batch 1 would contradict the new axis
    return candidate


def _batches_agree(candidate, original, channels: int, size: int) -> bool:
    import onnxruntime as ort

    batch = np.random.default_rng(0).standard_normal((3, channels, size, size)).astype(np.float32)
    try:
        dynamic = ort.InferenceSession(candidate.SerializeToString(), providers=["CPUExecutionProvider"])
        together = dynamic.run(None, {INPUT_NAME: batch})[0]
    except Exception:
        return False
    fixed = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    alone = np.concatenate([fixed.run(None, {INPUT_NAME: batch[i : i + 1]})[0] for i in range(len(batch))])
    return together.shape == alone.shape and np.allclose(together, alone, rtol=1e-4, atol=1e-4)


def compare_with_source(src: Path, imported: Path, batch: np.ndarray) -> float:
    """max |Δ logit| between the user's own file (image by image, under its own input name) and `model.onnx`."""
    import onnxruntime as ort

    source = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"])
    name = inspect_input(src).name
    expected = np.concatenate([source.run(None, {name: batch[i : i + 1]})[0] for i in range(len(batch))])
    ours = ort.InferenceSession(str(imported), providers=["CPUExecutionProvider"])
    batch_size = len(batch) if _dynamic(ours) else 1
    got = np.concatenate(
        [ours.run(None, {INPUT_NAME: batch[i : i + batch_size]})[0] for i in range(0, len(batch), batch_size)]
    )
    return float(np.abs(got - expected).max())


def _dynamic(session) -> bool:
    return not isinstance(session.get_inputs()[0].shape[0], int)
