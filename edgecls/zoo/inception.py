"""The Inception family for 32×32 inputs: the small Inception of the CIFAR-10 generalization study (Zhang et al.,
2017, appendix A) and GoogLeNet (Inception v1, Szegedy et al., 2015) on torchvision's batch-norm blocks with a CIFAR
stem.

Both end in concatenations of parallel branches, the shape that stresses INT8 export most: each branch has its own
activation range, and the targets quantize a Concat their own ways (TensorRT wants one scale across it, ONNX
Runtime requantizes).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.googlenet import BasicConv2d, Inception, InceptionAux

from edgecls.zoo.layers import conv_bn_relu
from edgecls.zoo.registry import register_model


class _TwoBranches(nn.Module):
    """Zhang et al.'s Inception module: a 1×1 and a 3×3 convolution side by side, concatenated."""

    def __init__(self, in_ch: int, ch1: int, ch3: int):
        super().__init__()
        self.branch1 = nn.Sequential(*conv_bn_relu(in_ch, ch1, kernel=1))
        self.branch3 = nn.Sequential(*conv_bn_relu(in_ch, ch3, kernel=3))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch3(x)], 1)


class _Downsample(nn.Module):
    """Zhang et al.'s downsample module: a stride-2 3×3 convolution beside a stride-2 3×3 max-pool, concatenated."""

    def __init__(self, in_ch: int, ch3: int):
        super().__init__()
        self.conv = nn.Sequential(*conv_bn_relu(in_ch, ch3, kernel=3, stride=2))
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)

    def forward(self, x):
        return torch.cat([self.conv(x), self.pool(x)], 1)


SMALL_STAGES = (  # ("inception", 1×1, 3×3) or ("downsample", 3×3), after a 96-filter 3×3 stem
    ("inception", 32, 32),
    ("inception", 32, 48),
    ("downsample", 80),
    ("inception", 112, 48),
    ("inception", 96, 64),
    ("inception", 80, 80),
    ("inception", 48, 96),
    ("downsample", 96),
    ("inception", 176, 160),
    ("inception", 176, 160),
)


class SmallInception(nn.Module):
    """Stem, ten modules (`SMALL_STAGES`), global average pooling, one linear layer; 1.65 M parameters."""

    def __init__(self, num_classes: int, in_channels: int):
        super().__init__()
        layers: list[nn.Module] = [*conv_bn_relu(in_channels, 96)]
        channels = 96
        for kind, *widths in SMALL_STAGES:
            if kind == "inception":
                layers.append(_TwoBranches(channels, *widths))
                channels = sum(widths)
            else:
                layers.append(_Downsample(channels, *widths))
                channels += widths[0]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


GOOGLENET_BLOCKS = {  # torchvision's (ImageNet) widths: in, 1×1, 3×3 reduce, 3×3, "5×5" reduce, "5×5", pool proj
    "inception3a": (192, 64, 96, 128, 16, 32, 32),
    "inception3b": (256, 128, 128, 192, 32, 96, 64),
    "inception4a": (480, 192, 96, 208, 16, 48, 64),
    "inception4b": (512, 160, 112, 224, 24, 64, 64),
    "inception4c": (512, 128, 128, 256, 24, 64, 64),
    "inception4d": (512, 112, 144, 288, 32, 64, 64),
    "inception4e": (528, 256, 160, 320, 32, 128, 128),
    "inception5a": (832, 256, 160, 320, 32, 128, 128),
    "inception5b": (832, 384, 192, 384, 48, 128, 128),
}


class GoogLeNetOutputs(NamedTuple):
    """What a GoogLeNet with auxiliary classifiers returns in training: the loss weighs the auxiliaries by 0.3."""

    logits: torch.Tensor
    aux1: torch.Tensor
    aux2: torch.Tensor


class CifarGoogLeNet(nn.Module):
    """GoogLeNet for 32×32: a 3×3 stride-1 stem of 192 filters in place of ImageNet's 7×7/2 convolution and two
    max-pools, then torchvision's nine Inception blocks (batch norm; its "5×5" branch is a 3×3, as torchvision's is)
    with max-pools after 3b and 4e (32 → 16 → 8). `aux_logits` adds the paper's two auxiliary classifiers after 4a
    and 4d, used in training only; evaluation and export see the main logits alone."""

    def __init__(self, num_classes: int, in_channels: int, aux_logits: bool = False, dropout: float = 0.2):
        super().__init__()
        self.stem = BasicConv2d(in_channels, 192, kernel_size=3, padding=1)
        for name, widths in GOOGLENET_BLOCKS.items():
            setattr(self, name, Inception(*widths))
        self.pool3, self.pool4 = nn.MaxPool2d(3, 2, padding=1), nn.MaxPool2d(3, 2, padding=1)
        self.aux1 = InceptionAux(512, num_classes) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes) if aux_logits else None
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x):
        x = self.pool3(self.inception3b(self.inception3a(self.stem(x))))
        x = self.inception4a(x)
        aux1 = self.aux1(x) if self.aux1 is not None and self.training else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if self.aux2 is not None and self.training else None
        x = self.inception5b(self.inception5a(self.pool4(self.inception4e(x))))
        logits = self.fc(self.dropout(F.adaptive_avg_pool2d(x, 1).flatten(1)))
        if aux1 is not None and aux2 is not None:
            return GoogLeNetOutputs(logits, aux1, aux2)
        return logits


@register_model(
    "small Inception of Zhang et al. 2017 (1×1 + 3×3 modules, conv + max-pool downsampling)",
    paper="89.05% CIFAR-10 (Zhang et al. 2017, with augmentation)",
)
def inception_small(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    return SmallInception(num_classes, in_channels)


@register_model("GoogLeNet (Inception v1, batch norm), CIFAR stem; aux_logits=True adds the auxiliary classifiers")
def googlenet(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, aux_logits: bool = False) -> nn.Module:
    return CifarGoogLeNet(num_classes, in_channels, aux_logits=aux_logits)
