"""Tests what a dead unit of a smooth activation (GELU, SiLU, Mish) is: outputs stuck in the
saturated negative region, not outputs that are merely small (a network whose signal shrinks
in eval mode with fresh BatchNorm statistics, e.g. timm's efficientnet_b1_pruned)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import inspectr


class Scaled(nn.Module):
    """Linear -> activation, the activation's input scaled and shifted."""

    def __init__(self, act: nn.Module, scale: float, shift: float) -> None:
        super().__init__()
        self.lin = nn.Linear(16, 32)
        self.act = act
        self.scale, self.shift = scale, shift
        self.head = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.lin(x) * self.scale + self.shift))


@pytest.mark.parametrize("act", [nn.SiLU(), nn.GELU(), nn.Mish()], ids=["silu", "gelu", "mish"])
@pytest.mark.parametrize("batch", [64, 4096])  # the small-output and the large-output paths
def test_a_tiny_signal_is_alive_and_a_saturated_one_is_dead(act: nn.Module, batch: int) -> None:
    torch.manual_seed(0)
    x = torch.randn(batch, 16)
    tiny = inspectr.inspect(Scaled(act, 1e-8, 0.0), inputs=x, backward=False)
    st = tiny.module("act").stats
    assert st is not None and st.max < 1e-6 and st.dead_fraction == 0.0
    assert not [f for f in tiny.findings if f.kind == "dead_units"]
    saturated = inspectr.inspect(Scaled(act, 1e-3, -40.0), inputs=x, backward=False)
    assert saturated.module("act").stats.dead_fraction == 1.0
    assert [f.module for f in saturated.findings if f.kind == "dead_units"] == ["act"]
