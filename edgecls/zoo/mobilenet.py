"""MobileNetV2 for CIFAR-sized inputs, as torchvision builds it.

`mobilenet_mod` is the "proposed MobileNet" of the CIFAR-10 study it comes from: torchvision's
MobileNetV2 with a shorter inverted-residual setting (1,545,482 parameters for 10 classes). Only the stem
convolution changes, and only for grey inputs.
"""

from __future__ import annotations

from torch import nn
from torchvision.models import MobileNetV2

from edgecls.zoo.registry import register_model

MOBILENET_MOD_SETTING = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 1, 2], [6, 96, 2, 1], [6, 160, 2, 2], [6, 320, 1, 1]]


def _mobilenet(setting: list[list[int]] | None, num_classes: int, in_channels: int, dropout: float) -> MobileNetV2:
    model = MobileNetV2(num_classes=num_classes, inverted_residual_setting=setting, dropout=dropout)
    if in_channels != 3:
        stem: nn.Conv2d = model.features[0][0]
        model.features[0][0] = nn.Conv2d(
            in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False
        )
        nn.init.kaiming_normal_(model.features[0][0].weight, mode="fan_out")
    return model


@register_model("MobileNetV2 with the CIFAR study's inverted-residual setting", paper="83.27% CIFAR-10 (SGD, lr 0.01)")
def mobilenet_mod(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, dropout: float = 0.2) -> nn.Module:
    return _mobilenet(MOBILENET_MOD_SETTING, num_classes, in_channels, dropout)


@register_model("torchvision MobileNetV2 (ImageNet setting)")
def mobilenet_v2(num_classes: int = 10, in_channels: int = 3, input_size: int = 32, dropout: float = 0.2) -> nn.Module:
    return _mobilenet(None, num_classes, in_channels, dropout)
