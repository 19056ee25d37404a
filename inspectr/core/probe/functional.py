"""Provides the functional watch: a ``TorchFunctionMode`` that sees the torch calls a ``forward`` makes.

It hands the probe what no module hook can see: functional activations (``F.relu`` inside a
``forward``), FLOPs at the torch-function level, and in-place ops about to change a parameter.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.overrides import TorchFunctionMode

from inspectr.core.probe.activations import FUNCTIONAL_ACTIVATIONS
from inspectr.core.probe.flops import count_flops

if TYPE_CHECKING:
    from inspectr.core.probe.hooks import ModuleHooks


class FunctionalWatch(TorchFunctionMode):
    """Sees functional activations and hands them to the probe with the calling module."""

    def __init__(self, probe: ModuleHooks) -> None:
        super().__init__()
        self.probe = probe

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        self.probe.guard.before_call(func, args)
        out = func(*args, **kwargs)
        if self.probe.opts.flops:
            fl = count_flops(func, args, kwargs, out)
            if fl is not None:
                self.probe.on_flops(fl)
        spec = FUNCTIONAL_ACTIVATIONS.get(func)
        if spec is not None and isinstance(out, torch.Tensor):
            self.probe.on_functional(spec, out)
        return out

