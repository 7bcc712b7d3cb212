"""Checkpoints: plain dicts of tensors and primitives, written atomically and read with weights_only=True.

A checkpoint carries everything needed to rebuild the model without the training code's help: model
name and arguments, class names, normalization and input size, plus the optimizer/scheduler state that
`--resume` needs.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgecls.errors import CheckpointError
from edgecls.fileio import atomic_write_bytes
from edgecls.zoo import create_model

FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    # Serialized in memory first: torch.save names the zip's root folder after the file it writes, and the
    # temporary name would make identical checkpoints differ byte for byte.
    buffer = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **payload}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu", data: bytes | None = None) -> dict[str, Any]:
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
    _check(path, ckpt)
    if ckpt["format"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {ckpt['format']}; this edgecls reads ≤ {FORMAT_VERSION}: upgrade edgecls")
    return ckpt


def _check(path: Path, ckpt: Any) -> None:
    """The fields export, eval and resume read, present and typed: a malformed file fails here with its name."""
    def fail(problem: str) -> CheckpointError:
        return CheckpointError(f"{path} is not a usable edgecls checkpoint: {problem}. Use a best.pt/last.pt written by "
                               "`edgecls train`, or re-save it from its run.")

    if not isinstance(ckpt, dict):
        raise fail(f"it holds a {type(ckpt).__name__}, not a dict")
    missing = {"format", "model", "state_dict", "classes", "normalization"} - set(ckpt)
    if missing:
        raise fail(f"missing {sorted(missing)}")
    model, norm, spec = ckpt["model"], ckpt["normalization"], ckpt.get("input", {"size": 1, "channels": 1})
    checks = [
        (isinstance(ckpt["format"], int) and not isinstance(ckpt["format"], bool),
         f"format must be an integer, got {ckpt['format']!r:.40}"),
        (isinstance(model, dict) and isinstance(model.get("name"), str) and isinstance(model.get("args"), dict),
         "model must be {'name': str, 'args': dict}"),
        (isinstance(ckpt["state_dict"], dict), "state_dict must be a dict of tensors"),
        (isinstance(ckpt["classes"], list | tuple) and len(ckpt["classes"]) > 0 and all(isinstance(c, str) for c in ckpt["classes"]),
         "classes must be a non-empty list of names"),
        (isinstance(norm, dict) and all(isinstance(norm.get(k), list | tuple) and len(norm[k]) > 0 for k in ("mean", "std")),
         "normalization must hold mean and std lists"),
        (isinstance(spec, dict) and all(isinstance(spec.get(k), int) and spec[k] > 0 for k in ("size", "channels")),
         "input must hold a positive integer size and channels"),
    ]
    for ok, problem in checks:
        if not ok:
            raise fail(problem)


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    spec = ckpt["model"]
    try:
        model = create_model(spec["name"], **spec["args"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's model {spec['name']}{spec['args']} cannot be built by this edgecls: {exc}. "
                              "Was it written by another version? Re-train or re-save it with this one.") from exc
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
