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
    # told (phase, modules run so far, modules in all) every 64 modules and between phases
    progress: Callable[[str, int, int], None] | None = None
