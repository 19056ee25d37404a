"""Provides ``ProbeOptions``: what one probe pass does, as the CLI's flags and the app ask."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class ProbeOptions:
    """What the probe does; mirrors the CLI flags."""

    backward: bool = True
    mode: str = "own"  # "own" | "train" | "eval"
    seed: int = 0
    flops: bool = True
    timing: bool = False
    histograms: bool = False
    cancelled: Callable[[], bool] | None = None  # checked between phases (app workers)
    # a forward-only pass records the graph all the same, to count what backward would need
    # (then drops it): the memory estimate needs no second forward
    count_saved: bool = True
    keep_saved: bool = False  # hand autograd the saved tensors even when no backward runs
    # told (phase, modules run so far, modules in all) every 64 modules and between phases
    progress: Callable[[str, int, int], None] | None = None
