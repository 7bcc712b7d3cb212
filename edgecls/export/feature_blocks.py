"""The blocks whose channel means a graph exposes as its second output, `features`, for the unknown score
(`edgecls.feature_distance`), and the wrapper that exports them beside the logits.

Which blocks: the trunk's stages as the model's own file names them. The children of `features` (torchvision's
convention for the trunk), else the model's top-level children; of those, the composite ones (an inverted residual,
a ResNet stage, an Inception module) and the spatial pooling layers (which end a stage of a plain stack like VGG's).
A dummy forward keeps those that run exactly once and give an N×C×H×W map; a model where none do (a user's module
of another shape) is exported with logits alone, and its bundle says "unknown" by the maximum softmax.
"""

from __future__ import annotations

import torch
from torch import nn

POOLS = (nn.MaxPool2d, nn.AvgPool2d)


def feature_blocks(model: nn.Module, in_channels: int, size: int) -> list[nn.Module]:
    """The blocks of `model` to take channel means of, in the order they run; [] when none fits."""
    trunk = model.features if isinstance(getattr(model, "features", None), nn.Sequential) else model
    candidates = [
        child for child in trunk.children() if isinstance(child, POOLS) or next(child.children(), None) is not None
    ]
    outputs: dict[int, list[int]] = {}  # id(block) → the ndim of each of its outputs in one forward
    hooks = [
        block.register_forward_hook(
            lambda module, _inputs, out: outputs.setdefault(id(module), []).append(getattr(out, "ndim", 0))
        )
        for block in candidates
    ]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, in_channels, size, size))
    finally:
        for hook in hooks:
            hook.remove()
    return [block for block in candidates if outputs.get(id(block)) == [4]]


class WithFeatures(nn.Module):
    """`model`, answering (logits, N×ΣC channel means of `blocks`): the graph export writes."""

    def __init__(self, model: nn.Module, blocks: list[nn.Module]):
        super().__init__()
        self.model, self.blocks = model, blocks
        self.widths: list[int] = []

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        taken: list[torch.Tensor] = []
        hooks = [
            block.register_forward_hook(lambda _m, _i, out: taken.append(out.mean((2, 3)))) for block in self.blocks
        ]
        try:
            logits = self.model(x)
        finally:
            for hook in hooks:
                hook.remove()
        self.widths = [int(t.shape[1]) for t in taken]
        return logits, torch.cat(taken, dim=1)
