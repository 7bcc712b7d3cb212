"""The classic CNNs, sized for 32×32 RGB and 28×28 grey: LeNet-5, AlexNet and VGG-16 (batch-norm)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from edgecls.zoo.layers import conv_bn_relu, flat_features
from edgecls.zoo.registry import register_model


class SequentialClassifier(nn.Module):
    """`features` → flatten → `classifier`; the common shape of the classic and custom CNNs."""

    def __init__(
        self,
        features: nn.Sequential,
        classifier_from: Callable[[int], nn.Sequential],
        in_channels: int,
        input_size: int,
    ):
        super().__init__()
        self.features = features
        self.classifier = classifier_from(flat_features(features, in_channels, input_size))

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


@register_model("LeNet-5 (ReLU, max-pool)", paper="63% CIFAR-10")
def lenet5(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    pad = 2 if input_size < 32 else 0
    features = nn.Sequential(
        nn.Conv2d(in_channels, 6, 5, padding=pad),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )

    def head(n: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Linear(n, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
            nn.Linear(84, num_classes),
        )

    return SequentialClassifier(features, head, in_channels, input_size)


@register_model("AlexNet, CIFAR-sized, batch-norm")
def alexnet(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    features = nn.Sequential(
        *conv_bn_relu(in_channels, 64),
        nn.MaxPool2d(2),
        *conv_bn_relu(64, 192),
        nn.MaxPool2d(2),
        *conv_bn_relu(192, 384),
        *conv_bn_relu(384, 256),
        *conv_bn_relu(256, 256),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(2),
    )
    return SequentialClassifier(
        features,
        lambda n: nn.Sequential(
            nn.Dropout(0.5), nn.Linear(n, 1024), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(1024, num_classes)
        ),
        in_channels,
        input_size,
    )


VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


@register_model("VGG-16, batch-norm, CIFAR head")
def vgg16(num_classes: int = 10, in_channels: int = 3, input_size: int = 32) -> nn.Module:
    layers: list[nn.Module] = []
    channels = in_channels
    for item in VGG16_CONFIG:
        if item == "M":
            layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil keeps 28×28 inputs alive through five pools
        else:
            layers += conv_bn_relu(channels, item)
            channels = item
    return SequentialClassifier(
        nn.Sequential(*layers),
        lambda n: nn.Sequential(
            nn.Dropout(0.5), nn.Linear(n, 512), nn.ReLU(inplace=True), nn.Dropout(0.5), nn.Linear(512, num_classes)
        ),
        in_channels,
        input_size,
    )
