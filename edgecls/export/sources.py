"""Where a bundle comes from: any source → `ModelSource`, the one thing the export pipeline reads.

Sources (`edgecls export SOURCE`):
- a zoo name with bundled weights, an `edgecls train` checkpoint or its run directory: they record their own
  classes, preprocessing, dataset and validation split;
- a user's PyTorch module: `path/to/file.py:NAME`, `package.module:NAME` (a class or a function returning an
  `nn.Module`) or `torchvision:NAME`, with `--weights` (a state dict saved any of the usual ways);
- an ONNX file someone else exported.

A model edgecls did not train brings nothing of its own, so its preprocessing, classes and data are given
(`ForeignOptions`) and nothing is guessed: mean/std in torchvision's 0–1 convention (refused when they look like
0–255 values), colour order, input size (read from the ONNX input where it is fixed) and the crop policy.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgecls.errors import CheckpointError, ConfigError, ExportError
from edgecls.export.options import ForeignOptions
from edgecls.fileio import sha256_file
from edgecls.imaging import IMAGENET_MEAN, IMAGENET_STD, ImageInput, Normalization, Policy

DEFAULT_VAL_FRACTION = 0.1
# Containers a training script commonly saves the state dict under, next to epoch, optimizer or best accuracy.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
# Prefixes training wrappers add: DataParallel/DDP, torch.compile, Lightning.
STRIPPABLE_PREFIXES = ("module.", "_orig_mod.", "model.")


@dataclass(frozen=True)
class ModelSource:
    """Everything export needs, whatever the source: a PyTorch module or an ONNX file, and how images reach it."""

    name: str
    description: str
    input: ImageInput
    preprocess: Policy
    classes: tuple[str, ...] | None  # None: the dataset's
    dataset: str | None
    split: dict | None  # the validation split the INT8 gate runs on
    module: Any = None  # torch.nn.Module, for PyTorch sources
    onnx_path: Path | None = None  # for ONNX sources
    checkpoint: dict | None = None  # an edgecls checkpoint: written as model.pt, the bench's PyTorch baseline
    card: Any = None  # bundled weights' `ModelCard`: their validation split and chosen calibration method
    notes: tuple[str, ...] = ()  # what the manifest should tell about this source


def resolve_source(source: str, foreign: ForeignOptions | None = None, seed: int = 0) -> ModelSource:
    foreign = foreign or ForeignOptions()
    if source.lower().endswith(".onnx"):
        return onnx_source(Path(source), foreign, seed)
    if _is_module_spec(source):
        return module_source(source, foreign, seed)
    if foreign.given():
        raise ConfigError(
            f"{', '.join(foreign.given())} apply to your own models (a module file, torchvision:NAME or an "
            f".onnx file); {source} records its own weights, preprocessing and classes"
        )
    return checkpoint_source(source, dataset=foreign.dataset)


def _is_module_spec(source: str) -> bool:
    """`file.py:NAME`, `package.module:NAME` or `torchvision:NAME` (a Windows drive letter is not a spec)."""
    head, sep, tail = source.rpartition(":")
    return (
        bool(sep)
        and tail.isidentifier()
        and len(head) > 1
        and (head.endswith(".py") or head == "torchvision" or all(p.isidentifier() for p in head.split(".")))
    )


# --- edgecls's own checkpoints ------------------------------------------------------------------------------------


def checkpoint_source(source: str, dataset: str | None = None) -> ModelSource:
    """A checkpoint path, a training run directory (its best.pt), or a zoo name with bundled weights."""
    from edgecls.train.checkpoint import describe_checkpoint, load_checkpoint, model_from_checkpoint
    from edgecls.zoo.pretrained import DEFAULT_DATASET, bundled_weights, model_card
    from edgecls.zoo.registry import model_info

    path, card = Path(source), None
    if path.is_dir() and (path / "best.pt").is_file():
        path = path / "best.pt"
    if path.suffix == ".pt" or path.is_file():
        ckpt, description = load_checkpoint(path), f"checkpoint {path} (sha256 {sha256_file(path)[:16]})"
    elif path.is_dir() or "/" in source or "\\" in source:
        raise CheckpointError(
            f"{source} is not a checkpoint, a training run (DIR/best.pt), a bundle (DIR/edgecls.json), "
            "an .onnx file or a module (file.py:NAME, package.module:NAME, torchvision:NAME)"
            + (": the path does not exist" if not path.exists() else "")
            + ". Train with `edgecls train MODEL --out DIR` or export with `edgecls export MODEL --out DIR` first"
        )
    else:
        model_info(source)  # raises with did-you-mean for unknown names
        weights = bundled_weights(source, dataset or DEFAULT_DATASET)
        if weights is None:
            raise CheckpointError(
                f"{source} has no bundled weights{' for ' + dataset if dataset else ''}; train it first "
                f"(`edgecls train {source}`) and export the checkpoint: `edgecls export runs/{source}/best.pt`"
            )
        ckpt = load_checkpoint(weights)
        card = model_card(source, dataset or DEFAULT_DATASET)
        if "split" not in ckpt and card:
            ckpt["split"] = card.split
        description = f"bundled weights {weights.name} (sha256 {sha256_file(weights)[:16]})"
    record = describe_checkpoint(path, ckpt)
    return ModelSource(
        name=record.model,
        description=description,
        input=record.image,
        preprocess=record.policy,
        classes=record.classes,
        dataset=dataset or record.dataset,
        split=record.split,
        module=model_from_checkpoint(ckpt),
        checkpoint=ckpt,
        card=card,
    )


NO_SPLIT = (
    "the checkpoint records no training/validation split (seed, fraction), so export cannot gate INT8 on the images "
    "the model was selected on; re-save it from its run with `edgecls train ... --resume`"
)


# --- a user's PyTorch module --------------------------------------------------------------------------------------


def module_source(spec: str, foreign: ForeignOptions, seed: int) -> ModelSource:
    module = build_module(spec, foreign.model_args)
    if not foreign.weights:
        raise ConfigError(
            f"{spec} needs its trained weights: --weights PATH (a state dict, or a dict holding one under "
            f"{' / '.join(STATE_DICT_KEYS)})"
        )
    load_weights(module, foreign.weights)
    channels = _first_conv_channels(module)
    if foreign.size is None:
        raise ConfigError(f"{spec}: pass the input size the model was trained at, --size N (e.g. 32 or 224)")
    name = foreign.name or spec.rpartition(":")[2]
    description = f"PyTorch module {spec} with weights {foreign.weights} (sha256 {sha256_file(foreign.weights)[:16]})"
    return _foreign_source(name, description, channels, foreign.size, foreign, seed, module=module.eval())


def build_module(spec: str, model_args: dict):
    """`file.py:NAME`, `package.module:NAME` or `torchvision:NAME` → an `nn.Module` (NAME a class, function or
    instance)."""
    from torch import nn

    where, _, attr = spec.rpartition(":")
    if where == "torchvision":
        import torchvision

        try:
            return torchvision.models.get_model(attr, weights=None, **model_args)
        except ValueError as exc:
            raise ConfigError(f"torchvision has no model {attr!r}: {exc}") from exc
    namespace = _import_file(Path(where)) if where.endswith(".py") else _import_module(where)
    if not hasattr(namespace, attr):
        public = sorted(n for n in vars(namespace) if not n.startswith("_"))
        raise ConfigError(f"{where} defines no {attr!r}; it has {', '.join(public[:20])}")
    obj = getattr(namespace, attr)
    if isinstance(obj, nn.Module):
        if model_args:
            raise ConfigError(f"{spec} is a module instance: --model-arg has nothing to pass its arguments to")
        return obj
    if not callable(obj):
        raise ConfigError(f"{spec} is a {type(obj).__name__}, not an nn.Module class or a function returning one")
    try:
        module = obj(**model_args)
    except TypeError as exc:
        raise ConfigError(
            f"{spec}({', '.join(f'{k}={v!r}' for k, v in model_args.items())}) failed: {exc}; "
            "pass its arguments with --model-arg KEY=VALUE"
        ) from exc
    if not isinstance(module, nn.Module):
        raise ConfigError(f"{spec}(...) returned a {type(module).__name__}, not an nn.Module")
    return module


def _import_file(path: Path):
    if not path.is_file():
        raise ConfigError(f"module file {path} not found")
    name = f"edgecls_user_{path.stem}_{sha256_file(path)[:8]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))  # the file may import its neighbours
    try:
        sys.modules[name] = module
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(name, None)
        raise ConfigError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _import_module(dotted: str):
    try:
        return importlib.import_module(dotted)
    except ImportError as exc:
        raise ConfigError(f"cannot import {dotted} ({exc}); is it installed, or on PYTHONPATH?") from exc


def read_state_dict(path: str) -> dict:
    """The state dict inside a weights file: bare, or under one of `STATE_DICT_KEYS`; loaded with weights_only=True."""
    import torch

    if not Path(path).is_file():
        raise CheckpointError(f"weights file {path} not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot load {path} with weights_only=True ({type(exc).__name__}: {str(exc)[:300]}). Save the "
            "state dict, not the whole model: torch.save(model.state_dict(), PATH); edgecls refuses to "
            "unpickle arbitrary objects"
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state dict")
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj
    for key in STATE_DICT_KEYS:
        inner = obj.get(key)
        if isinstance(inner, dict) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
            return inner
    raise CheckpointError(
        f"{path} is a dict with keys {sorted(map(str, obj))[:12]}, none of them a state dict; edgecls looks "
        f"for a bare state dict or one under {', '.join(STATE_DICT_KEYS)}"
    )


def match_keys(state: dict, expected: set[str]) -> dict:
    """`state` with its keys as the model names them: as saved, or with one wrapper prefix stripped from every key —
    only when that makes the keys match exactly. Otherwise a `CheckpointError` listing what is missing and
    unexpected."""
    optional = {k for k in expected if k.endswith("num_batches_tracked")}  # older PyTorch did not save them

    def fits(keys: set[str]) -> bool:
        return keys <= expected and expected - keys <= optional

    if fits(set(state)):
        return state
    for prefix in STRIPPABLE_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            stripped = {k[len(prefix) :]: v for k, v in state.items()}
            if fits(set(stripped)):
                return stripped
    missing, unexpected = sorted(expected - set(state) - optional), sorted(set(state) - expected)

    def listed(names: list[str]) -> str:
        return ", ".join(names[:8]) + (f" … ({len(names)} in all)" if len(names) > 8 else "")

    raise CheckpointError(
        "the weights do not fit the model: "
        + "; ".join(
            part
            for part in (
                f"missing {listed(missing)}" if missing else "",
                f"unexpected {listed(unexpected)}" if unexpected else "",
            )
            if part
        )
        + ". Is it the same architecture (and --model-arg values) the weights were trained with?"
    )


def load_weights(module, path: str) -> None:
    state = match_keys(read_state_dict(path), set(module.state_dict()))
    try:
        module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"the weights in {path} do not fit the model: {exc}") from exc


def _first_conv_channels(module) -> int:
    from torch import nn

    conv = next((m for m in module.modules() if isinstance(m, nn.Conv2d)), None)
    if conv is None or conv.in_channels not in (1, 3):
        raise ConfigError(
            "edgecls feeds images with 1 or 3 channels, and the model's first Conv2d "
            + ("is missing" if conv is None else f"takes {conv.in_channels}")
        )
    return conv.in_channels


# --- an ONNX file ----------------------------------------------------------------------------------------------------


def onnx_source(path: Path, foreign: ForeignOptions, seed: int) -> ModelSource:
    from edgecls.export.onnx_import import inspect_input

    if foreign.weights or foreign.model_args:
        raise ConfigError("--weights and --model-arg apply to PyTorch modules; an ONNX file carries its own weights")
    found = inspect_input(path)
    size = found.size
    if size is None and foreign.size is None:
        raise ConfigError(f"{path.name}'s input {found.name!r} has no fixed height and width: pass --size N")
    if size is not None and foreign.size is not None and size != foreign.size:
        raise ConfigError(
            f"--size {foreign.size} conflicts with {path.name}'s input {found.name!r}, which is "
            f"{size}×{size}; drop --size or pass --size {size}"
        )
    description = f"ONNX file {path} (sha256 {sha256_file(path)[:16]}), input {found.name!r} {found.shape_text}"
    return _foreign_source(
        foreign.name or path.stem, description, found.channels, size or foreign.size, foreign, seed, onnx_path=path
    )


# --- the Python API: a module object or an ONNX path -----------------------------------------------------------------


def foreign_source(model, foreign: ForeignOptions, seed: int = 0) -> ModelSource:
    """An `nn.Module` in memory (its weights already loaded) or an ONNX file's path → `ModelSource`."""
    if isinstance(model, str | Path):
        if not str(model).lower().endswith(".onnx"):
            raise ConfigError(f"{model} is not an .onnx file; pass an nn.Module or the path of an ONNX file")
        return onnx_source(Path(model), foreign, seed)
    from torch import nn

    if not isinstance(model, nn.Module):
        raise ConfigError(f"export_model takes an nn.Module or an ONNX file's path, got {type(model).__name__}")
    if foreign.size is None:
        raise ConfigError("pass the input size the model was trained at: size=N")
    description = f"PyTorch module {type(model).__module__}.{type(model).__qualname__} (Python API)"
    return _foreign_source(
        foreign.name or type(model).__name__,
        description,
        _first_conv_channels(model),
        foreign.size,
        foreign,
        seed,
        module=model.eval(),
    )


# --- what both foreign kinds share: preprocessing, classes, split -------------------------------------------------


def _foreign_source(
    name: str, description: str, channels: int, size: int, foreign: ForeignOptions, seed: int, **model
) -> ModelSource:
    if size < 1:
        raise ConfigError(f"--size must be ≥ 1, got {size}")
    if foreign.resize_shorter and foreign.resize_shorter < size:
        raise ConfigError(f"--resize-shorter {foreign.resize_shorter} is smaller than the crop --size {size}")
    crop_fraction = size / foreign.resize_shorter if foreign.resize_shorter else 1.0
    preprocess = Policy(normalization(foreign.mean, foreign.std, channels), crop_fraction=crop_fraction)
    classes = tuple(foreign.classes) if foreign.classes else read_labels(foreign.labels) if foreign.labels else None
    if classes is None and foreign.dataset is None:
        raise ConfigError("name the classes: --labels FILE (one name per line, in output order) or --dataset NAME")
    split = {
        "seed": seed,
        "val_fraction": DEFAULT_VAL_FRACTION,
        "subset": None,
        "chosen_by": "export: the model was trained elsewhere, so its own validation split is unknown",
    }
    return ModelSource(
        name=name,
        description=description,
        input=ImageInput(size, channels, foreign.color),
        preprocess=preprocess,
        classes=classes,
        dataset=foreign.dataset,
        split=split,
        **model,
    )


def normalization(mean: tuple[float, ...] | None, std: tuple[float, ...] | None, channels: int) -> Normalization:
    """torchvision-convention mean/std (pixels scaled to 0–1) → the bundle's pixel units (0–255), checked."""
    if mean is None or std is None:
        raise ConfigError(
            "give the normalization the model was trained with, in torchvision's convention (pixels scaled to "
            f"0–1): --mean {','.join(map(str, IMAGENET_MEAN))} --std {','.join(map(str, IMAGENET_STD))} for "
            "ImageNet statistics, --mean 0 --std 1 for plain 0–1 pixels"
        )
    values = {}
    for flag, given in (("--mean", mean), ("--std", std)):
        if len(given) == 1:
            given = tuple(given) * channels
        if len(given) != channels:
            raise ConfigError(f"{flag} has {len(given)} values but the model takes {channels} channel(s)")
        if not all(math.isfinite(v) for v in given):
            raise ConfigError(f"{flag} must be finite numbers, got {given}")
        if max(abs(v) for v in given) > 1.0:
            raise ConfigError(
                f"{flag} {','.join(map(str, given))} looks like 0–255 pixel values, but edgecls takes "
                f"torchvision's convention (applied to pixels scaled to 0–1): divide by 255, e.g. "
                f"{flag} {','.join(f'{v / 255:.4g}' for v in given)}"
            )
        values[flag] = given
    if min(values["--std"]) <= 0:
        raise ConfigError(f"--std must be > 0, got {values['--std']}")
    imagenet = channels == 3 and all(
        math.isclose(a, b)
        for a, b in zip(values["--mean"] + values["--std"], IMAGENET_MEAN + IMAGENET_STD, strict=True)
    )
    return Normalization(
        kind="imagenet" if imagenet else "given",
        mean=tuple(v * 255.0 for v in values["--mean"]),
        std=tuple(v * 255.0 for v in values["--std"]),
    )


def read_labels(path: str) -> tuple[str, ...]:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--labels {path} not found: give a text file with one class name per line, in output order")
    names = tuple(line.strip() for line in file.read_text(encoding="utf-8").splitlines() if line.strip())
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if len(names) < 2 or duplicates:
        raise ConfigError(
            f"--labels {path} must name at least two distinct classes, one per line"
            + (f"; repeated: {', '.join(duplicates)}" if duplicates else f"; it has {len(names)}")
        )
    return names


def check_output_width(width: int, classes: tuple[str, ...], where: str) -> None:
    if width != len(classes):
        raise ExportError(
            f"{where} gives {width} scores per image, but there are {len(classes)} classes "
            f"({', '.join(classes[:5])}{', …' if len(classes) > 5 else ''}); pass the labels the model was "
            "trained with (--labels FILE), or the dataset it was trained on"
        )
