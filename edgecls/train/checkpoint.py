"""Checkpoints: plain dicts of tensors and primitives, written atomically and read with weights_only=True.

A checkpoint carries everything needed to rebuild the model without the training code's help: model
name and arguments, class names, normalization and input size, plus the optimizer/scheduler state that
`--resume` needs.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgecls.errors import CheckpointError
from edgecls.fileio import atomic_write_bytes
from edgecls.imaging import ImageInput, Policy
from edgecls.jsonrecord import read_record
from edgecls.zoo import create_model
from edgecls.zoo.pretrained import DEFAULT_DATASET

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """What export, eval and the bench read from a checkpoint, typed. `payload` is the whole dict: the weights, and
    the optimizer state `--resume` needs."""

    model: str
    model_args: dict
    classes: tuple[str, ...]
    image: ImageInput
    policy: Policy
    dataset: str
    split: dict | None
    payload: dict


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    # Serialized in memory first: torch.save names the zip's root folder after the file it writes, and the
    # temporary name would make identical checkpoints differ byte for byte.
    buffer = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **payload}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu", data: bytes | None = None
) -> dict[str, Any]:
    """A checkpoint, unpickled with weights_only=True; from `data` (bytes already verified) when given, named `path`."""
    path = Path(path)
    if data is None and not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path if data is None else io.BytesIO(data), map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot load {path} with weights_only=True ({type(exc).__name__}: {exc}). It is truncated, not an "
            "edgecls checkpoint, or holds arbitrary Python objects, which edgecls refuses to unpickle."
        ) from exc
    describe_checkpoint(path, ckpt)
    if ckpt["format"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {ckpt['format']}; this edgecls reads ≤ {FORMAT_VERSION}: upgrade edgecls"
        )
    return ckpt


def describe_checkpoint(path: Path, ckpt: Any) -> Checkpoint:
    """The fields export, eval and resume read, present and typed: a malformed file fails here with its name."""

    def fail(problem: str) -> CheckpointError:
        return CheckpointError(
            f"{path} is not a usable edgecls checkpoint: {problem}. Use a best.pt/last.pt written by "
            "`edgecls train`, or re-save it from its run."
        )

    if not isinstance(ckpt, dict):
        raise fail(f"it holds a {type(ckpt).__name__}, not a dict")
    missing = {"format", "model", "state_dict", "classes", "normalization", "input"} - set(ckpt)
    if missing:
        raise fail(f"missing {sorted(missing)}")
    model, norm, spec = ckpt["model"], ckpt["normalization"], ckpt["input"]
    checks = [
        (
            isinstance(ckpt["format"], int) and not isinstance(ckpt["format"], bool),
            f"format must be an integer, got {ckpt['format']!r:.40}",
        ),
        (
            isinstance(model, dict) and isinstance(model.get("name"), str) and isinstance(model.get("args"), dict),
            "model must be {'name': str, 'args': dict}",
        ),
        (isinstance(ckpt["state_dict"], dict), "state_dict must be a dict of tensors"),
        (
            isinstance(ckpt["classes"], list | tuple)
            and len(ckpt["classes"]) > 0
            and all(isinstance(c, str) for c in ckpt["classes"]),
            "classes must be a non-empty list of names",
        ),
        (
            isinstance(norm, dict)
            and all(isinstance(norm.get(k), list | tuple) and len(norm[k]) > 0 for k in ("mean", "std")),
            "normalization must hold mean and std lists",
        ),
        (
            isinstance(spec, dict) and isinstance(spec.get("size"), int) and spec["size"] > 0,
            "input must hold a positive integer size",
        ),
    ]
    for ok, problem in checks:
        if not ok:
            raise fail(problem)
    image = read_record(ImageInput, spec, fail, "input")
    policy = read_record(Policy, {**ckpt.get("preprocess", {}), "normalization": norm}, fail, "preprocess")
    return Checkpoint(
        model=model["name"],
        model_args=model["args"],
        classes=tuple(ckpt["classes"]),
        image=image,
        policy=policy,
        dataset=ckpt.get("dataset", DEFAULT_DATASET),
        split=_split(ckpt),
        payload=ckpt,
    )


def _split(ckpt: dict) -> dict | None:
    """The run's {seed, val_fraction, subset}: recorded by `edgecls train` (or by a bundled model's card), or read
    from the run's config by older checkpoints; None when neither says."""
    if "split" in ckpt:
        return ckpt["split"]
    if "config" in ckpt:
        cfg = ckpt["config"]
        return {"seed": cfg["seed"], "val_fraction": cfg["val_fraction"], "subset": cfg.get("subset")}
    return None


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    spec = ckpt["model"]
    try:
        model = create_model(spec["name"], **spec["args"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"the checkpoint's model {spec['name']}{spec['args']} cannot be built by this edgecls: {exc}. "
            "Was it written by another version? Re-train or re-save it with this one."
        ) from exc
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint weights do not fit {spec['name']}{spec['args']}: {exc}") from exc
    return model.eval()


def load_matching(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Load the tensors whose name and shape match (transfer learning); return the names left out."""
    own = model.state_dict()
    kept = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(kept, strict=False)
    return sorted(set(own) - set(kept))
