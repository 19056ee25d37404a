"""Provides the charts of a training run: the loss curve, the gradient flow along the depth of the
network and the per-layer update ratios (the app's Training view; rich only)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from inspectr.core.inspection import Report
from inspectr.core.result import ModuleRow
from inspectr.report.formatting import sci

BLOCKS = " ▁▂▃▄▅▆▇█"
BAR = 24  # cells of a log-scale bar
USEFUL = (1e-5, 1e-1)  # the update-ratio band of the ``update_ratio`` finding


def loss_chart(losses: Sequence[float], height: int = 8, width: int = 60) -> RenderableType:
    """Loss per step as columns of eighth blocks, ``height`` rows, the y range on the left."""
    values = list(losses)
    if not values:
        return Text("no steps yet", style="dim")
    if len(values) > width:  # average into ``width`` columns
        step = len(values) / width
        values = [sum(values[int(i * step):max(int((i + 1) * step), int(i * step) + 1)])
                  / max(1, max(int((i + 1) * step), int(i * step) + 1) - int(i * step)) for i in range(width)]
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 1.0)
    span = (hi - lo) or 1.0
    levels = [None if not math.isfinite(v) else (v - lo) / span * (height * 8 - 1) + 1 for v in values]
    repeat = max(1, width // len(levels))  # few steps: wider columns
    levels = [lv for lv in levels for _ in range(repeat)]
    lines = []
    for row in range(height, 0, -1):
        label = {height: f"{hi:>9.4g} │", 1: f"{lo:>9.4g} │"}.get(row, f"{'':>9} │")
        t = Text(label, style="dim")
        for lv in levels:
            if lv is None:
                t.append("✖" if row == height else " ", style="bold red")
                continue
            fill = lv - (row - 1) * 8
            t.append(BLOCKS[max(0, min(8, int(round(fill))))] if fill > 0 or row == 1 else " ", style="green")
        lines.append(t)
    lines.append(Text(f"{'':>9} └" + "─" * len(levels), style="dim"))
    lines.append(Text(f"{'':>11}step 1" + f"step {len(losses)}".rjust(max(0, len(levels) - 6)), style="dim"))
    return Group(*lines)


def _log_bar(value: float | None, lo: float, hi: float, style: str, bar: int = BAR) -> Text:
    """A bar of up to ``bar`` cells whose length is ``value`` on a log scale between ``lo`` and ``hi``."""
    if value is None or not math.isfinite(value) or value <= 0:
        return Text("·".ljust(bar), style="dim")
    frac = (math.log10(value) - math.log10(lo)) / max(1e-12, math.log10(hi) - math.log10(lo))
    cells = max(0.0, min(1.0, frac)) * bar
    whole = int(cells)
    part = BLOCKS[int((cells - whole) * 8)] if whole < bar else ""
    return Text(("█" * whole + part.strip()).ljust(bar), style=style)


def layer_rows(report: Report) -> list[ModuleRow]:
    """Modules with their own trainable parameters or with activations, in forward order."""
    rows = [r for r in report.modules if r.update_ratio is not None or r.train_grad_norm is not None
            or r.end_dead_fraction is not None]
    return sorted(rows, key=lambda r: (r.order if r.order is not None else 10**9))


def gradient_flow(report: Report, width: int | None = None) -> RenderableType:
    """Per layer along the depth of the network: gradient norm (median over steps) and update
    ratio ||dw||/||w||, both as log-scale bars, and the dead fraction at the end. ``width``: the
    space there is (the bars shrink so that the numbers keep their columns at 80 columns)."""
    rows = layer_rows(report)
    if not rows:
        return Text("No layer with trainable parameters.", style="dim")
    grads = [r.train_grad_norm for r in rows if r.train_grad_norm and r.train_grad_norm > 0]
    g_hi = max(grads) if grads else 1.0
    g_lo = min(min(grads) if grads else 1.0, g_hi / 1e4)
    ratios = [r.update_ratio for r in rows if r.update_ratio and r.update_ratio > 0]
    u_lo = min([USEFUL[0] / 10, *ratios])
    u_hi = max([USEFUL[1] * 10, *ratios])
    flagged = {f.module for f in report.findings if f.kind in ("update_ratio", "stuck_parameters", "dying_units")}
    t = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    t.add_column("Layer (forward order)", no_wrap=True, overflow="ellipsis", max_width=36)
    # the fixed columns: names, two numbers (9 cells each), the dead fraction, 6 x 2 of padding
    names = min(36, max(len("Layer (forward order)"), *(len(r.path or "(root)") for r in rows)))
    bar = BAR if width is None else max(6, min(BAR, (width - names - 2 * 9 - 11 - 12) // 2))
    band = f", band {USEFUL[0]:g}…{USEFUL[1]:g}" if bar >= 20 else ""
    t.add_column("Grad norm (log)" if bar >= 15 else "Grad norm", no_wrap=True)
    t.add_column("", justify="right", no_wrap=True)
    t.add_column(f"Update ratio (log{band})" if bar >= 15 else "Update", no_wrap=True)
    t.add_column("", justify="right", no_wrap=True)
    t.add_column("Dead at end", justify="right", no_wrap=True)
    for r in rows:
        inside = r.update_ratio is not None and USEFUL[0] <= r.update_ratio <= USEFUL[1]
        name = Text(r.path or "(root)", style="bold red" if r.path in flagged else "")
        dead = r.end_dead_fraction
        t.add_row(
            name,
            _log_bar(r.train_grad_norm, g_lo, g_hi, "cyan", bar),
            sci(r.train_grad_norm),
            _log_bar(r.update_ratio, u_lo, u_hi, "green" if inside else "yellow", bar),
            sci(r.update_ratio),
            Text(f"{dead:.0%}" if dead is not None else "", style="red" if dead is not None and dead >= 0.7 else ""),
        )
    return t


def training_view(report: Report | None, live: Sequence[float] = (), total: int = 0,
                  status: str = "", width: int | None = None) -> RenderableType:
    """The whole Training view: a live loss curve while it runs, then the charts of the report."""
    parts: list[RenderableType] = []
    tr = report.training if report is not None else None
    if status:
        parts.append(Text(status, style="bold"))
    if tr is None:
        if live:
            parts.append(Text(f"\nLoss, step {len(live)} of {total}", style="bold"))
            parts.append(loss_chart(live))
        elif not status:
            parts.append(Text("Press t to train the model on the probe batch.", style="dim"))
        return Group(*parts)
    head = Text()
    head.append(f"{tr.steps_run} of {tr.steps} steps", style="bold")
    head.append(f" · {tr.optimizer_label} · {tr.mode} mode · {tr.seconds:.2f} s\n", style="")
    head.append(f"loss: {tr.loss_name}", style="dim")
    if tr.stopped:
        head.append(f"\nstopped: {tr.stopped}", style="bold red")
    parts += [head, Text("\nLoss per step", style="bold"), loss_chart(tr.loss)]
    problems = [f for f in report.findings if f.kind in (
        "not_learning", "diverging", "nonfinite_grad", "dying_units", "update_ratio", "stuck_parameters",
        "frozen_batchnorm_updating")]
    if problems:
        parts.append(Text("\nTraining findings", style="bold"))
        for f in problems:
            parts.append(Text(f"{'✖' if f.severity == 'error' else '▲'} {f.kind} at {f.module or '(root)'}: "
                              f"{f.message}", style="red" if f.severity == "error" else "yellow"))
    parts.append(Text("\nGradient flow and update ratios, layer by layer", style="bold"))
    parts.append(gradient_flow(report, width))
    return Group(*parts)
