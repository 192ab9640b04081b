"""The classifiers whose penultimate layer is the embedding: a CIFAR ResNet and a small CNN.

Both end in global average pooling, so `features` is the L2-normalisable vector the paper
clusters (64-d for ResNet-20), and `forward` adds one linear layer on top.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class EmbeddingNet(nn.Module):
    """`body` ends in global average pooling (the embedding); `head` is the linear classifier."""

    body: nn.Module
    head: nn.Module

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)  # type: ignore[no-any-return]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # type: ignore[no-any-return]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.short = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv2(self.conv1(x)) + self.short(x))


class ResNetCifar(EmbeddingNet):
    """He et al.'s CIFAR ResNet (6n+2 layers; n=3 is ResNet-20), 64-d penultimate layer."""

    def __init__(self, in_channels: int, n_classes: int, n: int = 3, width: int = 16) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(in_channels, width)]
        cin = width
        for stage, cout in enumerate((width, 2 * width, 4 * width)):
            for k in range(n):
                layers.append(BasicBlock(cin, cout, 2 if stage > 0 and k == 0 else 1))
                cin = cout
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(cin, n_classes)
        self.dim = cin



class SmallCNN(EmbeddingNet):
    """Four 3x3 conv layers, pooling after each of the first three while the map is at least 4x4.

    Pooling early keeps a CIFAR epoch near half a minute on two CPU cores.
    """

    def __init__(self, in_channels: int, n_classes: int, size: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, side = in_channels, size
        for k, cout in enumerate((width, 2 * width, 4 * width, 4 * width)):
            layers.append(_conv_bn(cin, cout))
            if k < 3 and side >= 4:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            cin = cout
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(cin, n_classes)
        self.dim = cin



ARCHS = ("auto", "resnet20", "cnn")
VERSIONS = {"resnet20": 1, "cnn": 2}  # bump when a network changes: cached weights are keyed by it


def resolve_arch(arch: str, size: int) -> str:
    """'auto' is the paper's choice: a CIFAR ResNet-20 for 32x32 and larger, a small CNN below."""
    return ("resnet20" if size >= 32 else "cnn") if arch == "auto" else arch


def build_model(arch: str, in_channels: int, n_classes: int, size: int) -> ResNetCifar | SmallCNN:
    arch = resolve_arch(arch, size)
    if arch == "resnet20":
        return ResNetCifar(in_channels, n_classes)
    if arch == "cnn":
        return SmallCNN(in_channels, n_classes, size)
    raise ValueError(f"unknown architecture {arch!r}: must be one of {', '.join(ARCHS)}")
