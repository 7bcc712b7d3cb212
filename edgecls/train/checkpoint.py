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


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} not found")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"cannot load {path} with weights_only=True ({type(exc).__name__}: {exc}). It is truncated, not an "
            "edgecls checkpoint, or holds arbitrary Python objects, which edgecls refuses to unpickle."
        ) from exc
    missing = {"format", "model", "state_dict", "classes", "normalization"} - set(ckpt if isinstance(ckpt, dict) else ())
    if missing:
        raise CheckpointError(f"{path} is not an edgecls checkpoint: missing {sorted(missing)}")
    if ckpt["format"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has checkpoint format {ckpt['format']}; this edgecls reads ≤ {FORMAT_VERSION}: upgrade edgecls")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    spec = ckpt["model"]
    model = create_model(spec["name"], **spec["args"])
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
