"""Provides zero-initialised branches: the residual one timm builds on purpose, and the same
zero on a path with no skip, which blocks the network until the parameter moves."""

from __future__ import annotations

import torch
from torch import nn

from sample_models._gallery import register


class BatchNormAct2d(nn.BatchNorm2d):
    """A norm layer that holds its activation, as timm's ``BatchNormAct2d`` does."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


class ConvNormAct(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = BatchNormAct2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class Bottleneck(nn.Module):
    """1x1 then 3x3, the last norm's weight zero (``zero_init_last``), added to the input when
    ``skip``."""

    def __init__(self, channels: int, skip: bool) -> None:
        super().__init__()
        self.conv1 = ConvNormAct(channels, channels // 2, 1)
        self.conv2 = ConvNormAct(channels // 2, channels, 3)
        nn.init.zeros_(self.conv2.bn.weight)
        self.skip = skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(self.conv1(x))
        return x + out if self.skip else out


class ZeroInitNet(nn.Module):
    def __init__(self, skip: bool, num_classes: int = 10) -> None:
        super().__init__()
        self.stem = ConvNormAct(3, 32, 3, 2)
        self.blocks = nn.Sequential(Bottleneck(32, skip), Bottleneck(32, skip))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.blocks(self.stem(x))).flatten(1))

    def example_input(self, batch_size: int = 4) -> torch.Tensor:
        return torch.randn(batch_size, 3, 32, 32)


@register(
    "zero_init_residual",
    "residual blocks whose last norm (activation inside, as timm's BatchNormAct2d) starts at 0",
    "004 building networks: residual blocks, zero_init_last as timm does it",
)
def zero_init_residual() -> nn.Module:
    """Each branch starts as the identity: its last norm weight is 0, so SiLU(0) = 0 everywhere
    at step 0. Healthy: the skip carries the signal and the weight trains."""
    return ZeroInitNet(skip=True)


@register(
    "sick_zero_gate",
    "the same zero-initialised norm weight with no skip around it: nothing passes at step 0",
    "004 building networks: a residual block with its skip forgotten",
    healthy=False,
    expected=("zero_init_blocks", "blocks.0.conv2.bn"),
)
def sick_zero_gate() -> nn.Module:
    """The blocks' skip was left out, so the zero norm weight blocks the whole network: the
    head sees a constant and the stem gets no gradient until the weight moves."""
    return ZeroInitNet(skip=False)
