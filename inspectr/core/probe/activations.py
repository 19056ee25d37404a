"""Provides the tables that say which outputs are activations and how their dead units look.

"rectifier": a dead unit is exactly 0 (ReLU family); "smooth": y stays in
(-``SMOOTH_DEAD_TOL``, 0], the saturated negative region of GELU/SiLU/Mish (inputs below about
-5 for GELU, -20 for SiLU). A positive output, however small, comes from a positive input
where the slope is at least 0.5: a network whose signal is tiny (fresh BatchNorm statistics in
eval mode) is not dead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

RECTIFIER_MODULES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Threshold)
SMOOTH_MODULES: tuple[type[nn.Module], ...] = (nn.GELU, nn.SiLU, nn.Mish)
ACTIVATION_MODULES = RECTIFIER_MODULES + SMOOTH_MODULES
# outputs that are never negative: their minimum is 0 wherever a unit is dead
NONNEG_MODULES: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6)

_F = torch.nn.functional
FUNCTIONAL_ACTIVATIONS: dict[Any, tuple[str, str]] = {
    _F.relu: ("F.relu", "rectifier"),
    _F.relu_: ("F.relu_", "rectifier"),
    torch.relu: ("torch.relu", "rectifier"),
    torch.relu_: ("torch.relu_", "rectifier"),
    torch.Tensor.relu: ("Tensor.relu", "rectifier"),
    torch.Tensor.relu_: ("Tensor.relu_", "rectifier"),
    _F.relu6: ("F.relu6", "rectifier"),
    _F.hardswish: ("F.hardswish", "rectifier"),
    _F.gelu: ("F.gelu", "smooth"),
    _F.silu: ("F.silu", "smooth"),
    _F.mish: ("F.mish", "smooth"),
}
_aten = torch.ops.aten
FUNCTIONAL_ACTIVATIONS.update({  # as an exported program's graph calls them
    _aten.relu.default: ("aten.relu", "rectifier"),
    _aten.relu_.default: ("aten.relu_", "rectifier"),
    _aten.hardswish.default: ("aten.hardswish", "rectifier"),
    _aten.gelu.default: ("aten.gelu", "smooth"),
    _aten.silu.default: ("aten.silu", "smooth"),
    _aten.mish.default: ("aten.mish", "smooth"),
})
NONNEG_OPS = {"F.relu", "F.relu_", "torch.relu", "torch.relu_", "Tensor.relu", "Tensor.relu_", "F.relu6",
              "aten.relu", "aten.relu_"}

# A 3-D output is [batch, channels, length] after these, [batch, seq, features] otherwise.
CHANNEL_FIRST_1D = (nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d, nn.InstanceNorm1d,
                    nn.MaxPool1d, nn.AvgPool1d, nn.AdaptiveAvgPool1d, nn.AdaptiveMaxPool1d)


def dead_kind_of(cls: type) -> str | None:
    """"rectifier", "smooth", or None for a module class whose outputs have no dead units to count."""
    if issubclass(cls, RECTIFIER_MODULES):
        return "rectifier"
    if issubclass(cls, SMOOTH_MODULES):
        return "smooth"
    return None
