"""The optimizer a user trains with: memory estimates count its state, training steps use it."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inspectr.errors import InspectrError

if TYPE_CHECKING:  # torch is imported on use: the CLI reads OPTIMIZERS before torch loads
    import torch

OPTIMIZERS = ("adamw", "adam", "sgd")
DTYPE_CHOICES = ("fp32", "bf16", "fp16")  # --dtype: fp32, or autocast mixed precision
DEFAULT_LR = 1e-3
DEFAULT_STEPS = 20  # training steps of ``--steps`` given alone (and of the app's ``t``)


@dataclass(frozen=True)
class OptimizerChoice:
    """``name`` is one of ``OPTIMIZERS``; ``momentum`` applies to sgd only."""

    name: str = "adamw"
    lr: float = DEFAULT_LR
    momentum: float = 0.0

    @property
    def states_per_param(self) -> int:
        """Tensors of a parameter's size the optimizer keeps: Adam(W) two moments, SGD with
        momentum one buffer, plain SGD none."""
        if self.name in ("adam", "adamw"):
            return 2
        return 1 if self.momentum else 0

    @property
    def label(self) -> str:
        name = {"adamw": "AdamW", "adam": "Adam", "sgd": "SGD"}[self.name]
        extra = f", momentum {self.momentum:g}" if self.name == "sgd" and self.momentum else ""
        return f"{name} (lr {self.lr:g}{extra})"

    def build(self, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        import torch

        params = list(params)
        if self.name == "adamw":
            return torch.optim.AdamW(params, lr=self.lr)
        if self.name == "adam":
            return torch.optim.Adam(params, lr=self.lr)
        return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)


def choose_optimizer(name: str | OptimizerChoice | None = "adamw", lr: float | None = None,
                     momentum: float | None = None) -> OptimizerChoice:
    """Validated ``OptimizerChoice`` from CLI/API values; errors name the flag and the fix."""
    if isinstance(name, OptimizerChoice):
        return name
    key = (name or "adamw").strip().lower()
    if key not in OPTIMIZERS:
        raise InspectrError(f"--optimizer {name!r} is not one inspectr knows.",
                            f"Use one of {', '.join(OPTIMIZERS)}.")
    lr = DEFAULT_LR if lr is None else float(lr)
    if not (math.isfinite(lr) and lr > 0):
        raise InspectrError(f"--lr {lr:g} must be a positive finite number.", "Use --lr 1e-3, for example.")
    momentum = 0.0 if momentum is None else float(momentum)
    if not 0.0 <= momentum < 1.0:
        raise InspectrError(f"--momentum {momentum:g} must be in [0, 1).", "Use --momentum 0.9, for example.")
    if momentum and key != "sgd":
        raise InspectrError(f"--momentum applies to --optimizer sgd, not {key}.",
                            "Drop --momentum, or use --optimizer sgd --momentum 0.9.")
    return OptimizerChoice(key, lr, momentum)
