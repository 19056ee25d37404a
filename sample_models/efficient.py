"""Provides the efficient convolutional networks: a small MBConv stack and a mini Inception."""

from __future__ import annotations

import torch
from torch import nn

from sample_models._gallery import register


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, bottleneck, sigmoid gate (seed 000 uses it undefined)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        reduced = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, reduced, 1)
        self.act = nn.SiLU()
        self.expand = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class MBConvBlock(nn.Module):
    """Seed 000's mobile inverted bottleneck block.

    Fixed vs the seed: ``SqueezeExcite`` is defined (the seed calls it without defining it);
    the rest (expansion, depthwise conv, SE, SiLU, projection, residual when shapes match)
    is as written.
    """

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, stride: int,
                 kernel_size: int = 3) -> None:
        super().__init__()
        hidden_channels = in_channels * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers += [
                nn.Conv2d(in_channels, hidden_channels, 1, bias=False),
                nn.BatchNorm2d(hidden_channels),
                nn.SiLU(),
            ]
        layers += [
            nn.Conv2d(hidden_channels, hidden_channels, kernel_size, stride=stride,
                      padding=kernel_size // 2, groups=hidden_channels, bias=False),
            nn.BatchNorm2d(hidden_channels),
            nn.SiLU(),
            SqueezeExcite(hidden_channels),
            nn.Conv2d(hidden_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_residual:
            return x + self.conv(x)
        return self.conv(x)


@register(
    "efficientnet_mbconv",
    "EfficientNet-style stack of MBConv blocks (expansion, depthwise, SE, SiLU), 3x32x32",
    "000 advanced architectures: MBConvBlock",
)
class MBConvNet(nn.Module):
    """A small EfficientNet-like classifier made of seed 000's MBConvBlock.

    Fixed vs the seed: the seed has only the block; this adds a stem, five blocks (two with
    residuals) and a pooled head, at CIFAR scale.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.SiLU(),
        )
        self.blocks = nn.Sequential(
            MBConvBlock(16, 16, expand_ratio=1, stride=1),
            MBConvBlock(16, 24, expand_ratio=6, stride=2),
            MBConvBlock(24, 24, expand_ratio=6, stride=1),
            MBConvBlock(24, 40, expand_ratio=6, stride=2, kernel_size=5),
            MBConvBlock(40, 40, expand_ratio=6, stride=1, kernel_size=5),
        )
        self.head = nn.Sequential(
            nn.Conv2d(40, 128, 1, bias=False),
            nn.BatchNorm2d(128),
            nn.SiLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(0.2),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 3, 32, 32)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1, 1x1-3x3, 1x1-5x5, pool-1x1) concatenated on channels."""

    def __init__(self, in_channels: int, c1: int, c3: tuple[int, int], c5: tuple[int, int],
                 pool_proj: int) -> None:
        super().__init__()
        self.branch1 = _conv_bn_relu(in_channels, c1, 1)
        self.branch3 = nn.Sequential(
            _conv_bn_relu(in_channels, c3[0], 1),
            _conv_bn_relu(c3[0], c3[1], 3),
        )
        self.branch5 = nn.Sequential(
            _conv_bn_relu(in_channels, c5[0], 1),
            _conv_bn_relu(c5[0], c5[1], 5),
        )
        self.branch_pool = nn.Sequential(
            nn.MaxPool2d(3, stride=1, padding=1),
            _conv_bn_relu(in_channels, pool_proj, 1),
        )
        self.out_channels = c1 + c3[1] + c5[1] + pool_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x)], dim=1
        )


def _conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


@register(
    "inception_mini",
    "two Inception blocks of parallel conv/pool branches concatenated, 3x32x32",
    "001 PyTorch classic models: InceptionNet (described, no code)",
)
class InceptionMini(nn.Module):
    """A two-block Inception network.

    Seed 001 only describes InceptionNet ("parallel kernels and pooling"); this is written
    from that description, not copied from torchvision's GoogLeNet.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = _conv_bn_relu(3, 32, 3)
        self.inception1 = InceptionBlock(32, 16, (16, 32), (8, 8), 8)
        self.pool = nn.MaxPool2d(2)
        self.inception2 = InceptionBlock(self.inception1.out_channels, 32, (32, 48), (8, 16), 16)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(self.inception2.out_channels, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inception1(self.stem(x))
        x = self.inception2(self.pool(x))
        return self.head(x)

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 3, 32, 32)
