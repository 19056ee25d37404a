"""Provides the residual networks: the hand-written ResNet-18 and a small SE-ResNet."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sample_models._gallery import register


class RestNetBasicBlock(nn.Module):
    """Seed 004's basic block (the seed's "RestNet" spelling kept so it can be traced back).

    Fixed vs the seed: only the first conv takes ``stride`` (the seed strides both, which
    breaks the identity shortcut for any stride > 1), and convs before BatchNorm drop their
    redundant bias.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(x + out)


class RestNetDownBlock(nn.Module):
    """Seed 004's down-sampling block: a 1x1 conv shortcut matches channels and resolution.

    Fixed vs the seed: the stride pair became a single stride on the first conv (the seed's
    ``[2, 1]`` list was the only value ever used), and the convs drop their bias.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 2) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.extra = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra_x = self.extra(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(extra_x + out)


@register(
    "resnet18_scratch",
    "hand-written ResNet-18 (basic and down-sampling blocks, ~11M params), 3x64x64",
    "004 building networks: RestNet18",
)
class RestNet18(nn.Module):
    """Seed 004's RestNet18.

    Fixed vs the seed: the stem now applies ReLU after ``bn1`` (the seed goes straight from
    BatchNorm to max-pool), the blocks are fixed as described on them, and ``num_classes``
    has a default so the gallery can build it with no arguments.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(RestNetBasicBlock(64, 64), RestNetBasicBlock(64, 64))
        self.layer2 = nn.Sequential(RestNetDownBlock(64, 128), RestNetBasicBlock(128, 128))
        self.layer3 = nn.Sequential(RestNetDownBlock(128, 256), RestNetBasicBlock(256, 256))
        self.layer4 = nn.Sequential(RestNetDownBlock(256, 512), RestNetBasicBlock(512, 512))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(F.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = self.avgpool(x)
        return self.fc(torch.flatten(x, 1))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        # 64x64 keeps CPU forward+backward fast; layer4 still sees a 2x2 map.
        return torch.randn(batch_size, 3, 64, 64)


def _relu() -> nn.Module:
    return nn.ReLU(inplace=True)


class ResidualBlock(nn.Module):
    """Seed 003's general residual block with an optional Squeeze-and-Excitation branch.

    Fixed vs the seed: ``activation`` is a factory called once per use. The seed's default
    argument ``nn.ReLU(inplace=True)`` is evaluated once, so every block (and every place
    inside a block) shared one module instance, and hooks on it could not tell them apart.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        use_se: bool = False,
        se_ratio: float = 0.25,
        activation: Callable[[], nn.Module] = _relu,
        norm_layer: Callable[[int], nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.main_branch = nn.Sequential(
            nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=dilation,
                      groups=groups, bias=False, dilation=dilation),
            norm_layer(out_channels),
            activation(),
            nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=dilation,
                      groups=groups, bias=False, dilation=dilation),
            norm_layer(out_channels),
        )
        self.se: nn.Module | None = None
        if use_se:
            reduced_channels = max(1, int(out_channels * se_ratio))
            self.se = nn.Sequential(
                nn.AdaptiveAvgPool2d(1),
                nn.Conv2d(out_channels, reduced_channels, 1),
                activation(),
                nn.Conv2d(reduced_channels, out_channels, 1),
                nn.Sigmoid(),
            )
        self.projection: nn.Module | None = None
        if in_channels != out_channels or stride != 1:
            self.projection = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                norm_layer(out_channels),
            )
        self.final_activation = activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.main_branch(x)
        if self.se is not None:
            out = out * self.se(out)
        if self.projection is not None:
            identity = self.projection(identity)
        out += identity
        return self.final_activation(out)


@register(
    "se_resnet",
    "small network of residual blocks with Squeeze-and-Excitation, 3x32x32",
    "003 advanced architectures: ResidualBlock",
)
class SEResNet(nn.Module):
    """A small classifier built from seed 003's ResidualBlock with ``use_se=True``.

    Fixed vs the seed: each block gets its own activation modules (see ResidualBlock).
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1, bias=False),
            nn.BatchNorm2d(32),
            nn.ReLU(inplace=True),
        )
        self.stages = nn.Sequential(
            ResidualBlock(32, 32, use_se=True),
            ResidualBlock(32, 64, stride=2, use_se=True),
            ResidualBlock(64, 128, stride=2, use_se=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(self.pool(x), 1))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 3, 32, 32)
