"""The classifiers whose penultimate layer is the embedding: an airbench-shaped net, a CIFAR ResNet, a small CNN.

Each ends in global pooling, so `features` is the L2-normalisable vector the paper clusters
(256-d for airnet, 64-d for ResNet-20), and `forward` adds one linear layer on top.
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



def _conv_bn_gelu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.GELU())


class AirNet(EmbeddingNet):
    """airbench94's shape (Jordan 2024): a 2x2 stem, then three blocks of conv, max-pool, conv.

    Wide, shallow 3x3 convolutions use the CPU's matrix units far better than ResNet-20's
    16-channel layers: at widths (64, 128, 256) a CIFAR-10 epoch takes ~95 s on two cores
    (ResNet-20: ~120 s) and reaches a higher accuracy in the same number of epochs.
    """

    def __init__(self, in_channels: int, n_classes: int, widths: tuple[int, int, int] = (64, 128, 256)) -> None:
        super().__init__()
        stem = 24
        layers: list[nn.Module] = [nn.Conv2d(in_channels, stem, 2, bias=True), nn.GELU()]
        cin = stem
        for w in widths:
            layers += [_conv_bn_gelu(cin, w), nn.MaxPool2d(2), _conv_bn_gelu(w, w)]
            cin = w
        self.body = nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(cin, n_classes, bias=False)
        self.dim = cin


class WhiteningBatchNorm(nn.BatchNorm2d):
    """airbench's batch norm: scale frozen at 1 (only the bias learns), eps 1e-12, momentum 0.6 in its sense."""

    def __init__(self, features: int, momentum: float = 0.6) -> None:
        super().__init__(features, eps=1e-12, momentum=1 - momentum)
        self.weight.requires_grad = False


class _Block(nn.Module):
    """conv, pool (when the map still has room), norm, GELU, conv, norm, GELU."""

    def __init__(self, cin: int, cout: int, pool: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding="same", bias=False)
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.norm1 = WhiteningBatchNorm(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding="same", bias=False)
        self.norm2 = WhiteningBatchNorm(cout)
        self.activ = nn.GELU()
        for conv in (self.conv1, self.conv2):  # dirac: each block starts as (nearly) the identity on its inputs
            nn.init.dirac_(conv.weight.data[: conv.weight.size(1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activ(self.norm1(self.pool(self.conv1(x))))
        return self.activ(self.norm2(self.conv2(x)))  # type: ignore[no-any-return]


class AirbenchNet(EmbeddingNet):
    """airbench94's network (Jordan 2024, github KellerJordan/cifar10-airbench): a frozen 2x2 patch-whitening
    conv (its filters set from the data by `init_whitening`; its bias trains early), three blocks, a global
    max-pool and a bias-free linear head scaled by 1/9. The penultimate layer is the max-pooled last block
    (`widths[2]` dimensions).

    A block pools while the map is at least 2 pixels wide, so 8x8 digits and 28x28 MNIST fit as well as 32x32.
    """

    def __init__(self, in_channels: int, n_classes: int, size: int, widths: tuple[int, int, int] = (64, 256, 256),
                 scale: float = 1 / 9) -> None:
        super().__init__()
        k = 2
        whiten = nn.Conv2d(in_channels, 2 * in_channels * k * k, k, padding=0, bias=True)
        whiten.weight.requires_grad = False
        side, cin, blocks = size - k + 1, 2 * in_channels * k * k, []
        for w in widths:
            blocks.append(_Block(cin, w, pool=side >= 2))
            side, cin = (side // 2 if side >= 2 else side), w
        self.body = nn.Sequential(whiten, nn.GELU(), *blocks, nn.AdaptiveMaxPool2d(1), nn.Flatten())
        self.head = nn.Linear(cin, n_classes, bias=False)
        self.scale = scale
        self.dim = cin

    @property
    def whiten(self) -> nn.Conv2d:
        """The frozen patch-whitening conv (the body's first layer)."""
        conv = next(self.body.children())
        assert isinstance(conv, nn.Conv2d)
        return conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x)) * self.scale  # type: ignore[no-any-return]

    @torch.no_grad()
    def init_whitening(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the whitening filters from normalised images x (N, C, H, W): the patch covariance's
        eigenvectors scaled by 1/sqrt(eigenvalue + eps), each filter and its negation."""
        c, (kh, kw) = x.shape[1], self.whiten.weight.shape[2:]
        patches = x.float().unfold(2, kh, 1).unfold(3, kw, 1).transpose(1, 3).reshape(-1, c * kh * kw)
        cov = patches.T @ patches / len(patches)
        values, vectors = torch.linalg.eigh(cov.double())
        values, vectors = values.flip(0).float(), vectors.T.flip(0).float()
        filters = (vectors / torch.sqrt(values.clamp_min(0) + eps)[:, None]).reshape(-1, c, kh, kw)
        self.whiten.weight.copy_(torch.cat((filters, -filters)).to(self.whiten.weight))


ARCHS = ("auto", "airbench", "airnet", "airnet-small", "resnet20", "cnn")
# bump when a network changes: cached weights and results are keyed by it
VERSIONS = {"airbench": 1, "airnet": 1, "airnet-small": 1, "resnet20": 1, "cnn": 2}


def resolve_arch(arch: str, size: int) -> str:
    """'auto': airnet for 32x32 and larger (the strongest per CPU-second here), a small CNN below."""
    return ("airnet" if size >= 32 else "cnn") if arch == "auto" else arch


def build_model(arch: str, in_channels: int, n_classes: int, size: int,
                widths: tuple[int, int, int] | None = None) -> EmbeddingNet:
    arch = resolve_arch(arch, size)
    if arch == "airbench":
        return AirbenchNet(in_channels, n_classes, size, widths or (64, 256, 256))
    if arch == "airnet":
        return AirNet(in_channels, n_classes)
    if arch == "airnet-small":
        return AirNet(in_channels, n_classes, (32, 64, 128))
    if arch == "resnet20":
        return ResNetCifar(in_channels, n_classes)
    if arch == "cnn":
        return SmallCNN(in_channels, n_classes, size)
    raise ValueError(f"unknown architecture {arch!r}: must be one of {', '.join(ARCHS)}")
