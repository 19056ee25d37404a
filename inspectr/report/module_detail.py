"""Provides ``module_detail``: everything about one module as one rich renderable.

The app's layer pane shows it; it reads the same rows and formatting as the report's table.
"""

from __future__ import annotations

import json

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from inspectr.core.inspection import Report
from inspectr.core.result import ModuleRow
from inspectr.report.formatting import (
    SEVERITY_MARK,
    SEVERITY_STYLE,
    human,
    human_bytes,
    sci,
    sparkline,
)
from inspectr.report.render import saved_by_subtree
from inspectr.report.source_view import source_panel


def module_detail(report: Report, row: ModuleRow) -> RenderableType:
    """Everything about one module, for the app's detail pane."""
    parts: list[RenderableType] = []
    title = Text(row.path or "(root)", style="bold")
    title.append(f"  {row.type}", style="cyan")
    parts.append(title)
    if row.extra_repr:
        parts.append(Text(row.extra_repr, style="dim"))
    g = Table.grid(padding=(0, 2))
    g.add_column(style="dim")
    g.add_column()
    g.add_row("params", f"{row.params:,} total · {row.own_params:,} own · {row.trainable_params:,} trainable ({row.trainable})")
    if row.aliases:
        g.add_row("shared", "also registered as " + ", ".join(row.aliases))
    if row.calls:
        g.add_row("calls", str(row.calls))
        g.add_row("input", json.dumps(list(row.input_shapes))[:200])
        g.add_row("output", row.output_structure)
    elif report.probe.ran and report.probe.error is not None and report.probe.error.module is not None and (
            row.path == report.probe.error.module or report.probe.error.module.startswith(row.path + ".") or row.path == ""):
        g.add_row("calls", Text(f"raised during the {report.probe.error.phase} pass", style="red"))
    elif report.probe.ran:
        g.add_row("calls", Text("not called by the probe's forward", style="yellow"))
    if row.flops_forward:
        g.add_row("FLOPs", f"{human(row.flops_forward)} forward" + (f" · {human(row.flops_backward)} backward" if row.flops_backward else ""))
    mem = report.memory
    if mem is not None and (row.saved_bytes or row.output_bytes or row.trainable_params):
        below = saved_by_subtree(report).get(row.path, 0)
        bits = [f"saved for backward {human_bytes(below)}" + (f" (own {human_bytes(row.saved_bytes)})"
                if row.saved_bytes and row.saved_bytes != below else "")]
        if row.output_bytes:
            bits.append(f"output {human_bytes(row.output_bytes)}")
        if row.trainable_params and report.model.total_params:
            per = report.model.param_bytes / report.model.total_params
            states = mem.optimizer_bytes // mem.grad_bytes if mem.grad_bytes else 0
            train = round(row.trainable_params * per * (1 + states))
            bits.append(f"gradients + {mem.optimizer.split(' (')[0]} state {human_bytes(train)}")
        g.add_row("memory", " · ".join(bits))
    if row.grad_norm is not None:
        g.add_row("grad", f"output grad norm {sci(row.grad_norm)} (RMS {sci(row.grad_rms)})")
    if row.param_grad_norm is not None:
        g.add_row("param grad", f"norm {sci(row.param_grad_norm)}")
    if row.time_ms is not None:
        g.add_row("time", f"{row.time_ms:.2f} ms")
    if report.training is not None:
        steps = report.training.steps_run
        if row.update_ratio is not None:
            g.add_row("update", f"||Δw||/||w|| {sci(row.update_ratio)} per step (median of {steps})"
                      + (f" · {sci(row.distance_from_init)} from init" if row.distance_from_init is not None else ""))
        if row.end_dead_fraction is not None:
            before = row.stats.dead_fraction if row.stats is not None else None
            was = f" (step 0: {before:.1%})" if before is not None else ""
            g.add_row("dead at end", Text(f"{row.end_dead_fraction:.1%} after {steps} steps{was}",
                                          style="red" if row.end_dead_fraction >= 0.5 else ""))
    parts.append(g)
    st = row.stats
    if st is not None:
        s = Table.grid(padding=(0, 2))
        s.add_column(style="dim")
        s.add_column()
        # ≈: a figure taken from a sample of a large output (ActivationStats.sampled)
        def approx(name: str) -> str:
            return "≈" if name in st.sampled else ""

        s.add_row("mean ± std", f"{approx('mean')}{sci(st.mean)} ± {approx('std')}{sci(st.std)}")
        s.add_row("min … max", f"{approx('min')}{sci(st.min)} … {approx('max')}{sci(st.max)}")
        s.add_row("zeros", f"{approx('zero_fraction')}{st.zero_fraction:.1%}")
        if st.sampled:
            s.add_row("sampled", f"≈ {', '.join(st.sampled)}: from 16,384 evenly spaced values; the rest exact")
        if st.dead_fraction is not None:
            s.add_row("dead units", Text(f"{st.dead_fraction:.1%} of {st.units:,}", style="red" if st.dead_fraction >= 0.5 else ""))
        if st.nan or st.inf:
            s.add_row("non-finite", Text(f"{st.nan:,} NaN · {st.inf:,} Inf", style="bold red"))
        if st.histogram:
            s.add_row("histogram", Text(sparkline(st.histogram), style="green"))
        parts.append(Text("\nActivations", style="bold"))
        parts.append(s)
    for f in row.functional:
        dead = f"{f.dead_fraction:.1%} dead of {f.units:,}" if f.dead_fraction is not None else ""
        parts.append(Text(f"{f.op} ×{f.calls} inside forward: zeros {f.zero_fraction:.1%} {dead}"))
    if row.parameters:
        p = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
        for col in ("name", "shape", "numel", "dtype", "device", "grad", "grad norm"):
            p.add_column(col, justify="right" if col in ("numel", "grad norm") else "left", no_wrap=True)
        for prm in row.parameters:
            p.add_row(prm.name + (f" = {prm.shared_with}" if prm.shared_with else ""), str(list(prm.shape)), f"{prm.numel:,}",
                      prm.dtype, prm.device, "✓" if prm.requires_grad else Text("❄", style="blue"), sci(prm.grad_norm))
        parts.append(Text("\nParameters", style="bold"))
        parts.append(p)
    found = report.findings_for(row.path)
    if found:
        parts.append(Text("\nFindings", style="bold"))
        for f in found:
            parts.append(Text(f"{SEVERITY_MARK[f.severity]} {f.kind}: {f.message}", style=SEVERITY_STYLE[f.severity]))
            where = source_panel(f)  # the user's code around the call, highlighted
            if where is not None:
                parts.append(where)
    return Group(*parts)
