"""The images an export measures on, cut once (`cut_data`): the test set (reported only), the training images without
validation (calibration), the validation split (the INT8 gate), the doctor's sample, and the class names they share
with the model; with --calib-dir, a user's unlabelled images as calibration and as the held-out gate."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecls.data import load_for_model
from edgecls.data.imageset import ImageSet
from edgecls.data.split import balanced_subset, train_val_split
from edgecls.errors import CheckpointError, ConfigError, ExportError
from edgecls.export.onnx_export import INPUT_NAME
from edgecls.export.options import ExportOptions
from edgecls.export.scoring import onnx_scores, session
from edgecls.export.sources import NO_SPLIT, ModelSource, check_output_width
from edgecls.manifest import InputSpec
from edgecls.runtime.preprocess import Preprocessor


@dataclass(frozen=True)
class ExportData:
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


def cut_data(
    src: ModelSource,
    options: ExportOptions,
    input_spec: InputSpec,
    fp32: Path,
    prep: Preprocessor,
    test_set: ImageSet | None,
    train_set: ImageSet | None,
) -> ExportData:
    """The dataset's test, train and validation splits, fitted to the model's input; with --calib-dir, its images
    as calibration and (without a labelled validation split) as the held-out gate; checked against the classes."""
    test_set, train_set, val_set = _datasets(src, options, input_spec, test_set, train_set)
    classes = _classes(src, test_set)
    check_output_width(_output_width(fp32, prep.channels, prep.size), classes, f"{src.name} (model.onnx)")
    if options.calib_dir:
        train_set, unlabelled_val = _unlabelled(options.calib_dir, fp32, prep, classes, options.seed)
        val_set = unlabelled_val if val_set is None else val_set
    sample = _pick_sample(test_set or val_set) if val_set is not None else None
    return ExportData(test_set, train_set, val_set, sample, classes)


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


def _pick_sample(test_set: ImageSet, per_class: int = 30) -> ImageSet:
    """A class-balanced slice of the test set, for `edgecls doctor` to reproduce on the target."""
    return test_set.take(
        balanced_subset(test_set.labels, per_class * len(test_set.classes), seed=0),
        name=f"{test_set.name}[doctor sample]",
    )
