"""`export_bundle`: model or checkpoint → bundle directory with every requested file and the manifest.

Nothing is lost: the new bundle is written into a staging directory beside the old one, checked
(accuracy gate, every file against the sealed manifest) and only then swapped into place in one step
(`staged_directory`). A failed, interrupted or killed export leaves the previous bundle as it was.

Every source (a zoo model, a checkpoint, a user's module or ONNX file) arrives as one `ModelSource`; nothing after
`resolve_source` asks which kind it was, except to say what it could compare the ONNX graph with.

Which data decides what: calibration uses the dataset's training images; the INT8 accuracy gate runs on the
validation split the checkpoint was selected on (rebuilt from its recorded seed and fraction; for a model trained
elsewhere, a split export draws from the training part and records); the test set is evaluated once, afterwards,
and only reported.
"""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table

from edgecls.bundle import MANIFEST, Bundle, file_entry, seal
from edgecls.calibration.quantize import quantize_for_cpu
from edgecls.calibration.reader import ArrayCalibrationReader, calibration_images
from edgecls.calibration.tensorrt_qdq import (
    INSTALL_HINT,
    TENSORRT8_OPSET,
    ModelOptChild,
    modelopt_available,
    quantize_for_tensorrt,
)
from edgecls.console import console
from edgecls.data import load_for_model
from edgecls.data.imageset import ImageSet
from edgecls.data.split import balanced_subset, train_val_split
from edgecls.errors import AccuracyDropError, CheckpointError, ConfigError, ExportError
from edgecls.export.formats import FORMATS, format_by_key
from edgecls.export.fp16 import convert_fp16
from edgecls.export.onnx_export import INPUT_NAME, OUTPUT_NAME, check_parity, export_onnx
from edgecls.export.options import ExportOptions, ForeignOptions
from edgecls.export.scoring import Scorer, onnx_scores, session
from edgecls.export.sources import NO_SPLIT, ModelSource, check_output_width, resolve_source
from edgecls.fileio import atomic_write, atomic_write_json, staged_directory
from edgecls.jsonrecord import to_json
from edgecls.manifest import FORMAT_VERSION, InputSpec
from edgecls.runtime.host import host_info
from edgecls.runtime.preprocess import Preprocessor
from edgecls.train.checkpoint import save_checkpoint


def _print_accuracy(accuracy: dict, sizes: dict) -> None:
    val, test = accuracy["validation"], accuracy.get("test")
    measure = "agreement with FP32" if "measure" in val else "top-1"
    gate = "the INT8 gate" if test is not None else f"the INT8 gate, {measure}"
    title = f"Accuracy: validation {val['dataset']} ({val['samples']} images, {gate})"
    table = Table(
        title=title + (f" and test {test['dataset']} ({test['samples']} images, reported only)" if test else "")
    )
    columns = (
        ("file", "precision", f"val {measure}", "val Δ vs FP32")
        + (("test top-1", "test Δ vs FP32") if test else ())
        + ("size",)
    )
    for col in columns:
        table.add_column(col)
    val_base = val["files"]["model.onnx"]["top1"]
    for name, row in val["files"].items():
        cells = [name, row["precision"], f"{row['top1']:.2%}", f"{(row['top1'] - val_base) * 100:+.2f} pt"]
        if test:
            test_top1, test_base = test["files"][name]["top1"], test["files"]["model.onnx"]["top1"]
            cells += [f"{test_top1:.2%}", f"{(test_top1 - test_base) * 100:+.2f} pt"]
        table.add_row(*cells, f"{sizes[name] / 1e6:.2f} MB")
    console.print(table)


def export_bundle(
    source: str | ModelSource,
    options: ExportOptions,
    test_set: ImageSet | None = None,
    train_set: ImageSet | None = None,
) -> dict:
    """Write the bundle and return its manifest. `source` is anything `resolve_source` reads, or a `ModelSource`
    (the Python API); `test_set`/`train_set` skip loading from disk (tests)."""
    started = time.perf_counter()
    with _early_modelopt(options) as modelopt:
        src = source if isinstance(source, ModelSource) else resolve_source(source, options.foreign, options.seed)
        if options.calib_method is None:
            chosen = src.card.calibration_method if src.card else None
            options = replace(options, calib_method=chosen["method"] if chosen else "minmax")
        final = Path(options.out or f"exports/{src.name}")
        carried = _files_to_carry(final)
        with staged_directory(final) as out:
            manifest = _write_bundle(out, final, src, options, test_set, train_set, modelopt)
            for path in carried:
                (shutil.copytree if path.is_dir() else shutil.copy2)(path, out / path.name)
            if carried:
                console.print(f"  kept from the previous bundle: {', '.join(p.name for p in carried)}")
    console.print(
        f"bundle written: {final}/{MANIFEST} ({len(manifest['files'])} files, digest {manifest['digest'][:19]}…, "
        f"{time.perf_counter() - started:.1f} s)"
    )
    return manifest


def _early_modelopt(options: ExportOptions) -> ModelOptChild | nullcontext:
    """ModelOpt's child process, started now if the export will make a TensorRT INT8 graph."""
    return ModelOptChild() if options.tensorrt_int8 and modelopt_available() else nullcontext()


def export_model(
    model,
    *,
    mean: tuple[float, ...],
    std: tuple[float, ...],
    classes: tuple[str, ...] | None = None,
    dataset: str | None = None,
    size: int | None = None,
    color: str = "rgb",
    resize_shorter: int | None = None,
    name: str | None = None,
    **options,
) -> dict:
    """The Python API for a model trained elsewhere: an `nn.Module` (weights loaded) or an ONNX file's path, with the
    preprocessing it was trained with (mean/std in torchvision's 0–1 convention) → a bundle; `options` are
    `ExportOptions` fields (out, fp16, int8, data_dir, …). Returns the manifest.

        export_model(net, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), size=224, resize_shorter=256,
                     dataset="folder", data_dir="my_images", int8=True, out="exports/mine")
    """
    from edgecls.export.sources import foreign_source

    foreign = ForeignOptions(
        mean=tuple(mean),
        std=tuple(std),
        classes=tuple(classes) if classes else None,
        dataset=dataset,
        size=size,
        color=color,
        resize_shorter=resize_shorter,
        name=name,
    )
    export_options = ExportOptions(**options, foreign=foreign)
    return export_bundle(foreign_source(model, foreign, export_options.seed), export_options)


def _files_to_carry(final: Path) -> list[Path]:
    """A user's own files in the bundle directory being replaced (e.g. bench reports); refuse to replace a
    non-bundle."""
    if final.exists() and not final.is_dir():
        raise ExportError(f"--out {final} is a file; export into a directory")
    if not final.is_dir():
        return []
    bundle_files = {f.file for f in FORMATS} | {MANIFEST}
    others = [
        p
        for p in sorted(final.iterdir())
        if p.name not in bundle_files and not p.name.endswith((".engine", ".engine.json"))
    ]
    if others and not (final / MANIFEST).is_file():
        raise ExportError(
            f"--out {final} holds files that are not an edgecls bundle ({', '.join(p.name for p in others[:5])}); "
            "export into a new or empty directory, or remove it first"
        )
    return others


@dataclass(frozen=True)
class _Data:
    """The images export measures on, cut once: test (reported only), train without validation (calibration),
    validation (the INT8 gate), the doctor's sample, and the class names they share with the model. All None
    without data."""

    test: ImageSet | None
    train: ImageSet | None
    val: ImageSet | None
    sample: ImageSet | None
    classes: tuple[str, ...]

    def splits(self) -> dict[str, ImageSet]:
        """What every graph is scored on."""
        splits = {"validation": self.val, "sample": self.sample, "test": self.test}
        return {name: images for name, images in splits.items() if images is not None}


class _Files(dict):
    """The manifest's `files` section, one entry per file written, recorded as it is written; with a `Scorer`, each
    ONNX graph starts being scored as soon as it is recorded."""

    def __init__(self, out: Path, scorer: Scorer | None = None):
        super().__init__()
        self.out, self.scorer = out, scorer

    def record(self, key: str) -> Path:
        fmt = format_by_key(key)
        path = self.out / fmt.file
        self[fmt.file] = file_entry(path, fmt.format, fmt.precision, fmt.target, fmt.flavour)
        if self.scorer is not None and fmt.format == "onnx":
            self.scorer.add(path, self[fmt.file])
        return path


def _write_bundle(
    out: Path,
    final: Path,
    src: ModelSource,
    options: ExportOptions,
    test_set: ImageSet | None,
    train_set: ImageSet | None,
    modelopt: ModelOptChild | None = None,
) -> dict:
    """Every file and the sealed manifest into `out` (the staging directory); raises unless all checks pass:
    model.onnx, the data cut once, the PyTorch and FP16/INT8 graphs, their accuracy and the gate, then the seal."""
    console.print(f"exporting {src.name} from {src.description} → {final}/")
    fp32, onnx_import = _write_fp32(src, out)
    input_spec = _input_spec(src, onnx_import)
    prep = Preprocessor(input_spec, src.preprocess)
    data = _cut_data(src, options, input_spec, fp32, prep, test_set, train_set)
    with Scorer(data.splits(), prep) if data.val is not None else nullcontext() as scorer:
        files = _Files(out, scorer)
        parity, calibration = _write_graphs(src, options, data, prep, files, onnx_import, modelopt)
        accuracy = _accuracy(scorer, files, data, src.split) if scorer else None
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": src.name,
        **({"dataset": src.dataset} if src.dataset else {}),
        "source": src.description,
        "classes": list(data.classes),
        "input": to_json(input_spec),
        "output": {"name": OUTPUT_NAME, "kind": "logits"},
        "preprocess": to_json(src.preprocess),
        "files": dict(files),
        "parity": parity,
        "accuracy": accuracy,
        "calibration": calibration,
        "tools": host_info()["versions"],
        "export_host": host_info(),
    }
    if accuracy and options.int8 and not options.allow_accuracy_drop:
        _check_int8_drop(accuracy, options, final)
    manifest = seal(manifest)
    atomic_write_json(out / MANIFEST, manifest)
    if options.target in ("tensorrt", "all"):
        engines = _maybe_build_engines(out, final, options)
        if engines:
            manifest = seal({**manifest, "engines": engines})
            atomic_write_json(out / MANIFEST, manifest)
    Bundle.open(out).verify_all()
    return manifest


def _write_graphs(
    src: ModelSource,
    options: ExportOptions,
    data: _Data,
    prep: Preprocessor,
    files: _Files,
    onnx_import: dict | None,
    modelopt: ModelOptChild | None = None,
) -> tuple[dict, dict | None]:
    """model.pt, model.onnx (checked against its source), FP16 and INT8 graphs: (parity, calibration)."""
    if src.checkpoint is not None:
        _write_checkpoint(files.out / "model.pt", src)
        files.record("pytorch")
    fp32 = files.record("onnx")
    parity = _parity(src, fp32, prep, data.test, onnx_import)
    if options.fp16:
        convert_fp16(fp32, files.out / "model.fp16.onnx")
        files.record("onnx-fp16")
    if not options.int8:
        return parity, None
    calibration = _quantize(
        fp32, files.out, data.train, prep, options, files.record, _fixed_batch(onnx_import), modelopt
    )
    calibration["dataset"] = (
        f"{options.calib_dir}: unlabelled images, the held-out ones excluded"
        if options.calib_dir
        else f"{src.dataset} train split, validation images excluded"
    )
    return parity, calibration


def _write_fp32(src: ModelSource, out: Path) -> tuple[Path, dict | None]:
    """model.onnx, exported from the PyTorch module or imported from the user's ONNX file (with what was changed)."""
    fp32 = out / "model.onnx"
    if src.module is not None:
        return export_onnx(src.module, fp32, src.input.channels, src.input.size), None
    from edgecls.export.onnx_import import import_onnx

    onnx_import = import_onnx(src.onnx_path, fp32, src.input.size)
    console.print(f"  model.onnx from {src.onnx_path.name}: {'; '.join(onnx_import['steps'])}")
    return fp32, onnx_import


def _input_spec(src: ModelSource, onnx_import: dict | None) -> InputSpec:
    size, channels = src.input.size, src.input.channels
    batch_axis = 1 if _fixed_batch(onnx_import) else -1
    return InputSpec(
        name=INPUT_NAME,
        shape=(batch_axis, channels, size, size),
        layout="NCHW",
        dtype="float32",
        size=size,
        channels=channels,
        color=src.input.color,
    )


def _fixed_batch(onnx_import: dict | None) -> bool:
    """An imported ONNX file whose batch axis is fixed at 1 (it is run image by image)."""
    return bool(onnx_import and onnx_import["batch"] == 1)


def _write_checkpoint(path: Path, src: ModelSource) -> None:
    """model.pt: the weights and what rebuilds the model, for the bench's PyTorch baseline (no optimizer state)."""
    ckpt = src.checkpoint
    minimal = {k: ckpt[k] for k in ("model", "state_dict", "classes", "normalization", "input") if k in ckpt}
    save_checkpoint(path, {**minimal, "dataset": src.dataset, "metrics": ckpt.get("metrics", {})})


def _accuracy(scorer: Scorer, files: _Files, data: _Data, split: dict | None) -> dict:
    """Every graph's accuracy on validation (the gate), the doctor's sample (written into the bundle) and the test
    set (reported only)."""
    scored = scorer.rows()
    _write_sample(files.out, data.sample, scorer.scores["model.onnx", "sample"], files.record)
    validation = {**scored["validation"], "use": "INT8 gate"}
    if data.test is not None:
        validation["split"] = split
    else:
        validation["measure"] = AGREEMENT
    accuracy = {
        "validation": validation,
        "sample": {**scored["sample"], "use": "what `edgecls doctor` reproduces on the target"},
    }
    if data.test is not None:
        accuracy["test"] = {**scored["test"], "use": "reported only; no choice is made on it"}
    _print_accuracy(accuracy, {f: e["bytes"] for f, e in files.items()})
    return accuracy


def _cut_data(
    src: ModelSource,
    options: ExportOptions,
    input_spec: InputSpec,
    fp32: Path,
    prep: Preprocessor,
    test_set: ImageSet | None,
    train_set: ImageSet | None,
) -> _Data:
    """The dataset's test, train and validation splits, fitted to the model's input; with --calib-dir, its images
    as calibration and (without a labelled validation split) as the held-out gate; checked against the classes."""
    test_set, train_set, val_set = _datasets(src, options, input_spec, test_set, train_set)
    classes = _classes(src, test_set)
    check_output_width(_output_width(fp32, prep.channels, prep.size), classes, f"{src.name} (model.onnx)")
    if options.calib_dir:
        train_set, unlabelled_val = _unlabelled(options.calib_dir, fp32, prep, classes, options.seed)
        val_set = unlabelled_val if val_set is None else val_set
    sample = _pick_sample(test_set or val_set) if val_set is not None else None
    return _Data(test_set, train_set, val_set, sample, classes)


def _datasets(
    src: ModelSource,
    options: ExportOptions,
    input_spec: InputSpec,
    test_set: ImageSet | None,
    train_set: ImageSet | None,
) -> tuple[ImageSet | None, ImageSet | None, ImageSet | None]:
    """(test, train without validation, validation), each fitted to the model's input; all None without data."""
    needs_data = options.fp16 or options.int8
    if test_set is None and src.dataset and (needs_data or options.data_dir or os.environ.get("EDGECLS_DATA")):
        test_set = load_for_model(src.dataset, "test", options.data_dir, input_spec, src.preprocess)
    if test_set is None:
        if options.int8 and not options.calib_dir:
            raise ConfigError(
                "--int8 calibrates on training images and gates on validation images: name the dataset "
                "(--dataset NAME --data-dir DIR), or give unlabelled images of the scene (--calib-dir DIR)"
            )
        return None, None, None
    if src.split is None:
        raise CheckpointError(NO_SPLIT)
    if train_set is None:
        train_set = load_for_model(src.dataset, "train", options.data_dir, input_spec, src.preprocess)
    train_set, val_set = train_val_split(train_set, src.split)
    if options.eval_images:
        test_set = test_set.take(np.arange(min(options.eval_images, len(test_set))))
        val_set = val_set.take(np.arange(min(options.eval_images, len(val_set))))
    return test_set, train_set, val_set


AGREEMENT = (
    "top-1 agreement with model.onnx (FP32) on held-out images of --calib-dir: they have no labels, so this is "
    "how often each graph answers as FP32 does, not accuracy"
)


def _unlabelled(
    folder: str, fp32: Path, prep: Preprocessor, classes: tuple[str, ...], seed: int
) -> tuple[ImageSet, ImageSet]:
    """--calib-dir's images as (calibration, held out), labelled with model.onnx's own answers: the INT8 gate on the
    held-out part then measures agreement with FP32."""
    from edgecls.data.folder import load_unlabelled_images

    images = load_unlabelled_images(folder, prep.size, prep.channels, prep.crop_fraction)
    if len(images) < 10:
        raise ConfigError(
            f"--calib-dir {folder} holds {len(images)} images; give at least 10 (a few hundred calibrate well)"
        )
    predicted = onnx_scores(session(fp32), images, prep).argmax(1)
    data = ImageSet(f"{Path(folder).name} (labels: model.onnx's answers)", images, predicted, classes)
    order = np.random.default_rng(seed).permutation(len(images))
    held = max(5, len(images) // 5)
    return data.take(np.sort(order[held:]), f"{data.name}:calibration"), data.take(
        np.sort(order[:held]), f"{data.name}:held out"
    )


def _classes(src: ModelSource, data: ImageSet | None) -> tuple[str, ...]:
    """The model's class names, matched by name and order against the dataset it is measured on."""
    if src.classes is None:
        if data is None:
            raise ConfigError(
                f"the classes of {src.name} come from its dataset: pass --data-dir (or $EDGECLS_DATA), or --labels FILE"
            )
        return tuple(data.classes)
    if data is not None:
        data.require_classes(src.classes, src.name)
    return tuple(src.classes)


def _output_width(path: Path, channels: int, size: int) -> int:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {INPUT_NAME: np.zeros((1, channels, size, size), np.float32)})[0]
    if logits.ndim != 2:
        raise ExportError(f"model.onnx gives scores of shape {logits.shape} per batch; edgecls reads N×classes logits")
    return int(logits.shape[1])


def _parity(
    src: ModelSource, fp32: Path, prep: Preprocessor, test_set: ImageSet | None, onnx_import: dict | None
) -> dict:
    """model.onnx against what it came from, on real images where there are some."""
    rng = np.random.default_rng(0)
    channels, size = prep.channels, prep.size
    batch = (
        prep.batch_from_images(test_set.images[:64])
        if test_set is not None
        else rng.standard_normal((16, channels, size, size)).astype(np.float32)
    )
    inputs = f"{len(batch)} {'test images' if test_set is not None else 'random inputs'}"
    if src.module is not None:
        parity = {
            "reference": "PyTorch",
            "max_abs_diff": check_parity(src.module, fp32, batch),
            "atol": 1e-3,
            "rtol": 1e-3,
            "inputs": inputs,
        }
        console.print(f"  model.onnx: checker ok, max |Δ| vs PyTorch {parity['max_abs_diff']:.2e} on {inputs}")
        return parity
    from edgecls.export.onnx_import import compare_with_source

    worst = compare_with_source(src.onnx_path, fp32, batch)
    if worst > 1e-3:
        raise ExportError(
            f"model.onnx disagrees with {src.onnx_path.name} by up to {worst:.3g} (logits) on {inputs}; the "
            "import changed what the graph computes: report it with the file"
        )
    console.print(
        f"  model.onnx: checker ok, max |Δ| vs {src.onnx_path.name} {worst:.2e} on {inputs}; no PyTorch model "
        "to compare with"
    )
    return {
        "reference": "the source ONNX file (no PyTorch model: an ONNX source)",
        "max_abs_diff": worst,
        "atol": 1e-3,
        "inputs": inputs,
        "import": onnx_import,
    }


def _quantize(
    fp32: Path,
    out: Path,
    train_set: ImageSet,
    prep: Preprocessor,
    options: ExportOptions,
    record,
    fixed_batch: bool,
    modelopt: ModelOptChild | None = None,
) -> dict:
    """The INT8 graphs the target needs, calibrated on the same stratified training images; returns the calibration
    record.

    CPU: ONNX Runtime's quantizer (U8S8 for its kernels). TensorRT: NVIDIA ModelOpt (Q/DQ where TensorRT fuses it),
    whose child process runs beside ONNX Runtime's quantizer and the scoring of the graphs already written.
    With --target all and no ModelOpt installed, the TensorRT graph is skipped and the manifest says so.
    """
    calib = calibration_images(train_set, options.calib_images, options.seed)
    batch = prep.batch_from_images(calib.images)
    calibration = {
        "images": len(calib),
        "per_class": calib.class_counts().tolist(),
        "method": options.calib_method,
        "seed": options.seed,
        "excluded_nodes": list(options.exclude_nodes),
        "test_images_used": 0,
    }
    tensorrt = options.tensorrt_int8
    if tensorrt and options.target == "all" and not modelopt_available():
        console.print(f"  [yellow]{format_by_key('onnx-int8-trt').file} skipped:[/] {escape(INSTALL_HINT)}")
        calibration["tensorrt"] = {"skipped": INSTALL_HINT}
        tensorrt = False
    with ThreadPoolExecutor(1, thread_name_prefix="modelopt") as child:
        made = (
            child.submit(_quantize_for_tensorrt, fp32, out, batch, options, fixed_batch, modelopt) if tensorrt else None
        )
        if options.target in ("cpu", "all"):
            dst = out / format_by_key("onnx-int8").file
            reader = ArrayCalibrationReader(batch, INPUT_NAME, 1 if fixed_batch else 64)
            quantize_for_cpu(fp32, dst, reader, options.calib_method, options.exclude_nodes)
            record("onnx-int8")
            console.print(
                f"  {dst.name}: ONNX Runtime U8S8 Q/DQ, {options.calib_method} calibration on {len(calib)} images"
            )
        if made is not None:
            calibration.update(made.result())
            record("onnx-int8-trt")
            if options.tensorrt8:
                record("onnx-int8-trt8")
    return calibration


def _quantize_for_tensorrt(
    fp32: Path, out: Path, batch: np.ndarray, options: ExportOptions, fixed_batch: bool, modelopt: ModelOptChild | None
) -> dict:
    """ModelOpt's graph for TensorRT 10+ (in `modelopt`, the child started early) and with --tensorrt8 the one
    TensorRT 8.6 parses: their calibration records."""
    started = time.perf_counter()
    dst = out / format_by_key("onnx-int8-trt").file
    method, exclude = options.calib_method, options.exclude_nodes
    made = {
        "tensorrt": quantize_for_tensorrt(
            fp32, dst, batch, INPUT_NAME, method, exclude, fixed_batch=fixed_batch, child=modelopt
        )
    }
    placed = ", ".join(f"{n} {op}" for op, n in made["tensorrt"]["quantized_inputs_of"].items())
    console.print(
        f"  {dst.name}: {made['tensorrt']['tool']} Q/DQ ({placed}), FP16 elsewhere, {method} calibration on "
        f"{len(batch)} images, {time.perf_counter() - started:.1f} s in ModelOpt"
    )
    if options.tensorrt8:
        started = time.perf_counter()
        dst = out / format_by_key("onnx-int8-trt8").file
        made["tensorrt8"] = quantize_for_tensorrt(
            fp32, dst, batch, INPUT_NAME, method, exclude, "fp32", TENSORRT8_OPSET, fixed_batch
        )
        console.print(
            f"  {dst.name}: the same for TensorRT 8.6 (FP32 elsewhere, opset {TENSORRT8_OPSET}), "
            f"{time.perf_counter() - started:.1f} s in ModelOpt"
        )
    return made


def _pick_sample(test_set: ImageSet, per_class: int = 30) -> ImageSet:
    """A class-balanced slice of the test set, for `edgecls doctor` to reproduce on the target."""
    return test_set.take(
        balanced_subset(test_set.labels, per_class * len(test_set.classes), seed=0),
        name=f"{test_set.name}[doctor sample]",
    )


def _write_sample(out: Path, sample: ImageSet, logits: np.ndarray, record) -> None:
    """The doctor's sample, stored in the bundle as plain arrays (no pickle), with model.onnx's logits on it as
    ONNX Runtime computed them here: the reference a target without ONNX Runtime (TensorRT alone) compares with."""
    atomic_write(
        out / format_by_key("sample").file,
        lambda f: np.savez_compressed(
            f, images=sample.images, labels=sample.labels.astype(np.int64), logits=logits.astype(np.float32)
        ),
    )
    record("sample")


def _check_int8_drop(accuracy: dict, options: ExportOptions, final: Path) -> None:
    """The gate reads the validation split only: the test set stays unseen by every choice export makes."""
    val = accuracy["validation"]
    base = val["files"]["model.onnx"]["top1"]
    for fname, row in val["files"].items():
        drop = (base - row["top1"]) * 100
        if row["precision"] == "int8" and drop > options.max_accuracy_drop:
            raise AccuracyDropError(
                f"{fname} loses {drop:.2f} points against FP32 on the validation split ({row['top1']:.2%} vs "
                f"{base:.2%}, {val['samples']} images), more than --max-accuracy-drop {options.max_accuracy_drop}. "
                f"Try more calibration images (--calib-images {options.calib_images * 2}), another method "
                "(--calib-method entropy or percentile), or keeping sensitive layers in float (--exclude-node NAME), "
                "judging each on this validation figure; or accept it with --allow-accuracy-drop. Nothing was "
                f"written: {final} is as it was."
            )


def _maybe_build_engines(out: Path, final: Path, options: ExportOptions) -> list[dict]:
    """Engines for this machine's GPU, recorded in the manifest about to be sealed (so a signature covers them). A build
    that fails, or INT8 without the ModelOpt graph, costs the engine, never the bundle: the target builds its own."""
    from edgecls.errors import EdgeclsError
    from edgecls.runtime.backends import tensorrt_unavailable
    from edgecls.runtime.engines import build_bundle_engines

    why = tensorrt_unavailable()
    if why:
        console.print(f"[yellow]{why}: engines skipped.[/] On the target run: edgecls build-engine {final}")
        return []
    precisions = [p for p, on in (("fp16", options.fp16), ("int8", options.int8)) if on] or ["fp16"]
    if "int8" in precisions and not (out / format_by_key("onnx-int8-trt").file).is_file():
        precisions.remove("int8")
        console.print(f"[yellow]no INT8 engine:[/] the bundle has no TensorRT INT8 graph ({escape(INSTALL_HINT)})")
    built = []
    for precision in precisions:  # one at a time: TensorRT 8.6 builds FP16 from a bundle whose INT8 graph it cannot
        try:
            built += build_bundle_engines(out, (precision,), out_dir=out)
        except (EdgeclsError, RuntimeError, OSError) as exc:
            console.print(
                f"[yellow]no {precision} engine ({escape(str(exc)[:300])}); the bundle is complete without it.[/] "
                f"On the target run: edgecls build-engine {final}"
            )
    return built
