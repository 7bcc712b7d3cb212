"""Evaluate a PyTorch model on an `ImageSet` through the runtime's own preprocessing (`Preprocessor`), as the
deployed graph will see the images, and write the report `edgecls.evaluate` writes for a bundle."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn

from edgecls.console import progress
from edgecls.data.imageset import ImageSet
from edgecls.evaluate import write_report
from edgecls.imaging import ImageInput, Normalization, Policy
from edgecls.metrics import classification_report
from edgecls.runtime.preprocess import Preprocessor


def tta_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Six views, as airbench evaluates: the image and its mirror (weight 1/2), and both shifted by one pixel
    up-left and down-right with reflection (1/4 each pair). An evaluation aid only: deployed graphs see one view."""
    import torch.nn.functional as F

    def mirrored(v: torch.Tensor) -> torch.Tensor:
        return 0.5 * (model(v) + model(v.flip(-1)))

    h, w = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = 0.5 * (mirrored(padded[..., :h, :w]) + mirrored(padded[..., 2:, 2:]))
    return 0.5 * mirrored(x) + 0.5 * shifted


def predict_scores(
    model: nn.Module,
    data: ImageSet,
    normalization: Normalization,
    batch_size: int = 512,
    device: str | torch.device = "cpu",
    tta: bool = False,
) -> np.ndarray:
    """Scores through the runtime's own preprocessing (`Preprocessor`), as the deployed graph will see the images."""
    model = model.to(device).eval()
    prep = Preprocessor(ImageInput(data.input_size, data.in_channels), Policy(normalization))
    forward = (lambda x: tta_logits(model, x)) if tta else model
    batches = progress(prep.batches(data.images, batch_size), f"evaluating on {data.name}", -(-len(data) // batch_size))
    with torch.no_grad():
        return np.concatenate([forward(torch.from_numpy(batch).to(device)).float().cpu().numpy() for batch in batches])


def evaluate_model(
    model: nn.Module,
    data: ImageSet,
    normalization: Normalization,
    device: str = "cpu",
    out_json: str | os.PathLike | None = None,
    tta: bool = False,
    header: dict | None = None,
) -> dict:
    scores = predict_scores(model, data, normalization, device=device, tta=tta)
    report = {**(header or {}), **classification_report(data.labels, scores, data.classes), "tta": tta}
    if out_json:
        write_report(report, scores, data, out_json)
    return report
