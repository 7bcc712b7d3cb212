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

import shutil
import time
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.markup import escape
from rich.table import Table

from edgecls.bundle import MANIFEST, Bundle, file_entry, seal
from edgecls.calibration.tensorrt_qdq import (
    INSTALL_HINT,
    ModelOptChild,
    modelopt_available,
)
from edgecls.confidence import BINS, RETENTION, calibrated, fit, reliability
from edgecls.console import console
from edgecls.data.imageset import ImageSet
from edgecls.errors import ExportError
from edgecls.export.data import AGREEMENT, ExportData, cut_data
from edgecls.export.formats import FORMATS, format_by_key
from edgecls.export.fp16 import convert_fp16
from edgecls.export.int8 import check_int8_drop, quantize
from edgecls.export.onnx_export import FEATURES_NAME, INPUT_NAME, OUTPUT_NAME, check_parity, export_onnx, feature_nodes
from edgecls.export.options import ExportOptions, ForeignOptions
from edgecls.export.scoring import Scorer
from edgecls.export.sources import ModelSource, resolve_source
from edgecls.export.unknown import feature_record, fit_feature_distance
from edgecls.fileio import atomic_write, atomic_write_bytes, atomic_write_json, staged_directory
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
    borrowed = str((val.get("split") or {}).get("chosen_by", "")).startswith("export:")
    table = Table(
        title=title + (f" and test {test['dataset']} ({test['samples']} images, reported only)" if test else ""),
        caption="the validation images were drawn by export from the dataset's training part, which a model trained "
        "elsewhere may have trained on: its validation figures may be optimistic; the test set was held out"
        if borrowed
        else None,
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
    fp32, onnx_import, widths = _write_fp32(src, out)
    input_spec = _input_spec(src, onnx_import)
    prep = Preprocessor(input_spec, src.preprocess)
    data = cut_data(src, options, input_spec, fp32, prep, test_set, train_set)
    labelled = data.test is not None and data.train is not None
    distance = fit_feature_distance(fp32, data.train, prep, widths, options.seed) if widths and labelled else None
    with Scorer(data.splits(), prep, distance) if data.val is not None else nullcontext() as scorer:
        files = _Files(out, scorer)
        parity, calibration = _write_graphs(src, options, data, prep, files, onnx_import, modelopt, widths)
        if distance is not None:
            atomic_write_bytes(out / format_by_key("features").file, distance.to_bytes())
            files.record("features")
        accuracy = _accuracy(scorer, files, data, src.split) if scorer else None
        confidence = _confidence(scorer, data) if scorer and data.test is not None else None
    manifest = {
        "format_version": FORMAT_VERSION,
        "model": src.name,
        **({"dataset": src.dataset} if src.dataset else {}),
        "source": src.description,
        "classes": list(data.classes),
        "input": to_json(input_spec),
        "output": {
            "name": OUTPUT_NAME,
            "kind": "logits",
            **(
                {"features": {"name": FEATURES_NAME, "blocks": widths, "file": format_by_key("features").file}}
                if distance
                else {}
            ),
        },
        "preprocess": to_json(src.preprocess),
        "files": dict(files),
        "parity": parity,
        "accuracy": accuracy,
        "calibration": calibration,
        **({"confidence": confidence} if confidence else {}),
        "tools": host_info()["versions"],
        "export_host": host_info(),
    }
    if accuracy and options.int8 and not options.allow_accuracy_drop:
        check_int8_drop(accuracy, options, final)
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
    data: ExportData,
    prep: Preprocessor,
    files: _Files,
    onnx_import: dict | None,
    modelopt: ModelOptChild | None = None,
    widths: list[int] | None = None,
) -> tuple[dict, dict | None]:
    """model.pt, model.onnx (checked against its source), FP16 and INT8 graphs: (parity, calibration). The nodes
    that compute the `features` output stay in float in both INT8 graphs (`feature_nodes`)."""
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
    kept_float = tuple(feature_nodes(fp32)) if widths else ()
    calibration = quantize(
        fp32, files.out, data.train, prep, options, files.record, _fixed_batch(onnx_import), modelopt, kept_float
    )
    calibration["dataset"] = (
        f"{options.calib_dir}: unlabelled images, the held-out ones excluded"
        if options.calib_dir
        else f"{src.dataset} train split, validation images excluded"
    )
    return parity, calibration


def _write_fp32(src: ModelSource, out: Path) -> tuple[Path, dict | None, list[int]]:
    """model.onnx, exported from the PyTorch module (with its blocks' channel means as `features`) or imported from
    the user's ONNX file (with what was changed): (path, what the import changed, the feature blocks' widths)."""
    fp32 = out / "model.onnx"
    if src.module is not None:
        return fp32, None, export_onnx(src.module, fp32, src.input.channels, src.input.size)
    from edgecls.export.onnx_import import import_onnx

    onnx_import = import_onnx(src.onnx_path, fp32, src.input.size)
    console.print(f"  model.onnx from {src.onnx_path.name}: {'; '.join(onnx_import['steps'])}")
    return fp32, onnx_import, []


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


def _accuracy(scorer: Scorer, files: _Files, data: ExportData, split: dict | None) -> dict:
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


def _confidence(scorer: Scorer, data: ExportData) -> dict:
    """Each graph's temperature and unknown threshold, fitted on its own validation logits (never the test set's),
    and the calibration error they leave on the test set (reported only). Not for --calib-dir's unlabelled images:
    their labels are model.onnx's own answers."""
    files = {}
    for name in scorer.entries:
        fitted = fit(scorer.scores[name, "validation"], data.val.labels)
        logits = scorer.scores[name, "test"]
        test = calibrated(logits, fitted["temperature"], fitted["beta"])
        files[name] = {**fitted, "test_ece_after": reliability(test, data.test.labels, logits.argmax(axis=1))["ece"]}
        if scorer.distances:
            files[name]["features"] = feature_record(
                scorer.distances[name, "validation"], scorer.distances[name, "test"]
            )
    console.print(
        "  confidence (temperature on validation; ECE on test after): "
        + "; ".join(f"{n} T {f['temperature']:.3f}, ECE {f['test_ece_after']:.4f}" for n, f in files.items())
    )
    unknown = (
        "the feature distance (Lee et al. 2018's Mahalanobis distance on every block's channel means, the blocks "
        "standardized on validation and added with equal weights) above the value"
        if scorer.distances
        else "the calibrated top-1 probability (Hendrycks & Gimpel 2017's maximum softmax) below the value"
    )
    return {
        "method": "temperature scaling (Guo et al. 2017), then top-label beta calibration (Kull et al. 2017), fitted "
        f"on the validation split; unknown: {unknown} that keeps {RETENTION:.0%} of validation images",
        "retention": RETENTION,
        "bins": BINS,
        "files": files,
    }


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
