"""The INT8 graphs of an export: ONNX Runtime's for CPUs and ModelOpt's for TensorRT, calibrated on the same
stratified training images, and the gate on their accuracy drop."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
from rich.markup import escape

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
from edgecls.data.imageset import ImageSet
from edgecls.errors import AccuracyDropError
from edgecls.export.formats import format_by_key
from edgecls.export.onnx_export import INPUT_NAME
from edgecls.export.options import ExportOptions
from edgecls.runtime.preprocess import Preprocessor


def quantize(
    fp32: Path,
    out: Path,
    train_set: ImageSet,
    prep: Preprocessor,
    options: ExportOptions,
    record,
    fixed_batch: bool,
    modelopt: ModelOptChild | None = None,
    float_nodes: tuple[str, ...] = (),
) -> dict:
    """The INT8 graphs the target needs, calibrated on the same stratified training images; returns the calibration
    record. `float_nodes` stay in float beside the user's --exclude-node ones (the `features` output's).

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
        **({"feature_nodes_in_float": list(float_nodes)} if float_nodes else {}),
    }
    options = replace(options, exclude_nodes=(*options.exclude_nodes, *float_nodes))
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
    concats = _concat_reports(out)
    if concats:
        calibration["concat"] = concats
        described = "; ".join(
            f"{name} {', '.join(f'{n} {kind}' for kind, n in sorted(kinds.items()))}" for name, kinds in concats.items()
        )
        console.print(f"  concatenations (branch scales shared, or each branch requantized): {described}")
    return calibration


def _concat_reports(out: Path) -> dict[str, dict[str, int]]:
    """Per INT8 graph written, how its Concat nodes are quantized (`calibration.concat`); {} for a graph without any,
    so a bundle of a model without concatenations records nothing."""
    import onnx

    from edgecls.calibration.concat import concat_report

    reports = {}
    for key in ("onnx-int8", "onnx-int8-trt", "onnx-int8-trt8"):
        path = out / format_by_key(key).file
        if path.is_file() and (report := concat_report(onnx.load(str(path), load_external_data=False))):
            reports[path.name] = report
    return reports


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


def check_int8_drop(accuracy: dict, options: ExportOptions, final: Path) -> None:
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
