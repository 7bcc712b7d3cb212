"""A model edgecls did not write: a user's own module file, layer names of its own, trained with plain PyTorch."""

import torch
from torch import nn


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 16):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.BatchNorm2d(2 * width),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.body(x), 1))


class BatchOneNet(TinyNet):
    """As exported by code that hard-codes the batch: `reshape(1, -1)` bakes a batch of 1 into the graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x).reshape(1, -1))


def build(num_classes: int = 10) -> nn.Module:
    return TinyNet(num_classes)
