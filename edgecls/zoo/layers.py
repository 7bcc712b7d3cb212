"""Small helpers shared by the CIFAR-sized model files."""

from __future__ import annotations

import torch
from torch import nn


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    ]


@torch.no_grad()
def flat_features(features: nn.Module, in_channels: int, input_size: int) -> int:
    """Size of `features`' flattened output for one image, so heads adapt to 28×28 and 32×32 alike."""
    was_training = features.training
    features.eval()
    n = features(torch.zeros(1, in_channels, input_size, input_size)).flatten(1).shape[1]
    features.train(was_training)
    if n == 0:
        raise ValueError(f"input size {input_size} is too small for this network")
    return n
