"""Provides the small formatting every view shares: numbers, shapes, sparklines and marks.

The report's renderables, the app's panes and the Training view all write a number the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from inspectr.core.result import ModuleRow

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}
SEVERITY_MARK = {"error": "✖", "warning": "▲", "info": "●"}
TRAINABLE_MARK = {"all": "", "none": "❄ frozen", "partial": "◐ partial", "n/a": ""}
SPARK = "▁▂▃▄▅▆▇█"


def human(n: int | float | None) -> str:
    """2_400_000 -> '2.4M'."""
    if n is None:
        return ""
    n = float(n)
    for unit, div in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= div:
            v = n / div
            return f"{v:.1f}{unit}" if v < 100 else f"{v:.0f}{unit}"
    return f"{n:.0f}"


def human_bytes(n: int) -> str:
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"


def sci(x: float | None) -> str:
    if x is None:
        return ""
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    if x == 0:
        return "0"
    return f"{x:.2e}" if abs(x) < 1e-2 or abs(x) >= 1e4 else f"{x:.3g}"


def shape_text(row: ModuleRow) -> str:
    if not row.calls:
        return "—" if row.path or not row.output_structure else row.output_structure
    shapes = row.output_shapes
    if len(shapes) == 1 and row.output_structure.startswith("Tensor"):
        return "[" + ", ".join(map(str, shapes[0])) + "]"
    return row.output_structure or "—"


def sparkline(counts: Sequence[int]) -> str:
    if not counts:
        return ""
    top = max(counts) or 1
    return "".join(SPARK[min(len(SPARK) - 1, int(c / top * (len(SPARK) - 1) + (0.5 if c else 0)))] for c in counts)


def curve(values: Sequence[float], width: int = 60) -> str:
    """A sparkline of a series between its own min and max; NaN/Inf are drawn as ✖.
    Longer series are averaged into ``width`` buckets (the last value stays the last cell)."""
    if not values:
        return ""
    if len(values) > width:
        step = len(values) / width
        buckets = [values[int(i * step):max(int((i + 1) * step), int(i * step) + 1)] for i in range(width)]
        values = [v[-1] if any(not math.isfinite(x) for x in v) else sum(v) / len(v) for v in buckets]
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    span = hi - lo
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append("✖")
        else:
            out.append(SPARK[int((v - lo) / span * (len(SPARK) - 1) + 0.5)] if span > 0 else SPARK[0])
    return "".join(out)
