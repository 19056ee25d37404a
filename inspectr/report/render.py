"""Provides the rich renderables of a report and its export to text, markdown, JSON, HTML and SVG.

The one formatting path: the CLI prints these, the app's panes show the same ones (one module's
detail: report/module_detail.py; numbers and marks: report/formatting.py).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from inspectr.core.inspection import Report
from inspectr.core.result import Finding, ModuleRow
from inspectr.report.formatting import (
    SEVERITY_MARK,
    SEVERITY_STYLE,
    TRAINABLE_MARK,
    curve,
    human,
    human_bytes,
    sci,
    shape_text,
)
from inspectr.report.json_text import json_text
from inspectr.report.long_table import LongTable
from inspectr.report.source_view import caret_lines, finding_sources, source_block

if TYPE_CHECKING:
    from inspectr.core.memory.estimate import MemoryEstimate

FORMATS = ("text", "markdown", "json", "html", "svg")


# ---------------------------------------------------------------- tree guides


def tree_prefixes(rows: Sequence[ModuleRow]) -> list[str]:
    """Box-drawing guides for rows in ``named_modules()`` order (children follow parents)."""
    paths = [r.path for r in rows]
    index = {p: i for i, p in enumerate(paths)}
    parent = {p: (p.rsplit(".", 1)[0] if "." in p else "") for p in paths if p}
    last_child: dict[str, str] = {}
    for p in paths:
        if p:
            last_child[parent[p]] = p
    out = []
    for p in paths:
        if not p:
            out.append("")
            continue
        parts = []
        anc = parent[p]
        while anc:
            up = parent.get(anc, "")
            parts.append("   " if last_child.get(up) == anc else "│  ")
            anc = up
            if anc not in index:
                break
        guide = "".join(reversed(parts))
        guide += "└─ " if last_child.get(parent[p]) == p else "├─ "
        out.append(guide)
    return out


# ---------------------------------------------------------------- report pieces


def header(report: Report) -> RenderableType:
    m = report.model
    t = Text()
    t.append(f"{m.name}", style="bold")
    t.append(f"  {m.class_name} · {m.source}")
    if m.description:
        t.append(f" · {m.description}", style="dim")
    t.append("\n")
    p = report.probe
    if report.inputs:
        t.append("inputs  ", style="dim")
        t.append(", ".join(report.inputs) + "\n")
    if p.ran:
        t.append("probe   ", style="dim")
        status = "ok" if p.ok else f"failed in the {p.error.phase} pass" if p.error else "failed"
        t.append(status, style="green" if p.ok else "bold red")
        t.append(f" · {p.mode} mode · {p.device}")
        if p.batch_size:
            t.append(f" · batch {p.batch_size}")
        bw = {"ran": "backward ran", "skipped": "backward skipped", "failed": "backward failed", "off": "forward only"}[p.backward]
        t.append(f" · {bw} · {p.seconds:.2f} s")
        if p.shape_only:
            t.append(" · shape-only (meta)", style="yellow")
    return t


SAVED_COLUMN_WIDTH = 100  # narrower consoles leave out the Memory column (the totals still say it)


def module_table(report: Report, depth: int | None = None, stats: bool = True,
                 width: int | None = None) -> Table:
    """The module tree as a table; ``depth`` folds deeper modules into their ancestors;
    ``width``: the console's, when known (the Memory column needs SAVED_COLUMN_WIDTH)."""
    rows = [r for r in report.modules if depth is None or r.depth <= depth]
    prefixes = tree_prefixes(rows)
    has_flops = any(r.flops_forward for r in rows)
    has_grad = any(r.grad_norm is not None for r in rows)
    has_saved = (width is None or width >= SAVED_COLUMN_WIDTH) and any(r.saved_bytes for r in rows)
    t = LongTable(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, expand=False)
    t.add_column("Module", no_wrap=True, overflow="ellipsis", max_width=60)
    t.add_column("Type", no_wrap=True, overflow="ellipsis", max_width=28)
    t.add_column("Output", overflow="fold", max_width=36)
    t.add_column("Params", justify="right", no_wrap=True)
    t.add_column("Train", no_wrap=True)
    if has_flops:
        t.add_column("FLOPs", justify="right", no_wrap=True)
    if has_saved:  # bytes autograd keeps for backward, the module and everything inside it
        t.add_column("Memory", justify="right", no_wrap=True)
    if stats and has_grad:
        t.add_column("Grad norm", justify="right", no_wrap=True)
    trained = stats and report.training is not None
    if trained:  # median ||dw||/||w|| of the module's own parameters over the training steps
        t.add_column("Update", justify="right", no_wrap=True)
    if stats:
        t.add_column("Notes", overflow="fold", max_width=30)
    saved_below = saved_by_subtree(report) if has_saved else {}
    flagged: dict[str, list[Finding]] = {}
    for f in report.findings:
        flagged.setdefault(f.module, []).append(f)
    # a cell that repeats (a type, a shape, a blank) is one Text shared by its rows: rich reads
    # cells and never changes them, and 20,000-row tables repeat most of theirs
    shared: dict[tuple[str, str], Text] = {}

    def cell(text: str, style: str = "") -> Text:
        got = shared.get((text, style))
        if got is None:
            got = shared[(text, style)] = Text(text, style=style)
        return got

    for r, pre in zip(rows, prefixes):
        name = r.path.rsplit(".", 1)[-1] if r.path else "(root)"
        label = Text(pre, style="dim")
        label.append(name, style="bold" if r.depth == 0 else "")
        if r.aliases:
            label.append(" ⇄", style="magenta")
        folded = depth is not None and r.depth == depth and not r.is_leaf
        if folded:
            label.append(" …", style="dim")
        cells: list[RenderableType] = [
            label,
            cell(r.type, "cyan"),
            cell(shape_text(r)),
            cell((f"{r.params:,}" if r.params else "—") + (" q" if r.packed_params else ""),
                 "dim" if r.trainable == "none" else ""),
            cell(TRAINABLE_MARK[r.trainable], "blue"),
        ]
        if has_flops:
            cells.append(cell(human(r.flops_forward) if r.flops_forward else ""))
        if has_saved:
            below = saved_below.get(r.path, 0)
            cells.append(cell(human_bytes(below) if below else ""))
        if stats and has_grad:
            cells.append(cell(sci(r.grad_norm)))
        if trained:
            cells.append(cell(sci(r.update_ratio)))
        if stats:
            found = flagged.get(r.path)
            if found or r.calls > 1 or r.aliases:
                notes = Text()
                for f in found or ():
                    notes.append(f"{SEVERITY_MARK[f.severity]} {f.kind} ", style=SEVERITY_STYLE[f.severity])
                if r.calls > 1:
                    notes.append(f"×{r.calls} ", style="dim")
                if r.aliases:
                    notes.append(f"shared as {', '.join(r.aliases[:2])}", style="magenta")
                cells.append(notes)
            else:
                cells.append(cell(""))
        t.add_row(*cells)
    return t


def saved_by_subtree(report: Report) -> dict[str, int]:
    """Saved-for-backward bytes of each module together with everything inside it."""
    below: dict[str, int] = {}
    for r in report.modules:
        if not r.saved_bytes:
            continue
        parts = r.path.split(".") if r.path else []
        for i in range(len(parts) + 1):
            key = ".".join(parts[:i])
            below[key] = below.get(key, 0) + r.saved_bytes
    return below


def totals(report: Report) -> RenderableType:
    m = report.model
    t = Table.grid(padding=(0, 2))
    t.add_column(style="dim")
    t.add_column(justify="right")
    t.add_row("Total params", f"{m.total_params:,}")
    t.add_row("Trainable", f"{m.trainable_params:,}")
    t.add_row("Frozen", Text(f"{m.frozen_params:,}", style="blue" if m.frozen_params else ""))
    if report.memory is None:  # the memory block says it otherwise
        t.add_row("Param memory", human_bytes(m.param_bytes))
    if m.buffer_elements:
        t.add_row("Buffers", f"{m.buffer_elements:,} ({human_bytes(m.buffer_bytes)})")
    root = report.modules[0] if report.modules else None
    if root is not None and root.flops_forward:
        t.add_row("FLOPs forward", f"{human(root.flops_forward)} ({root.flops_forward:,})")
        if root.flops_backward:
            t.add_row("FLOPs backward", f"{human(root.flops_backward)} ({root.flops_backward:,})")
    return t


def memory_lines(mem: MemoryEstimate) -> list[tuple[str, str, str]]:
    """The memory block as (label, amount, what it is) rows, for the report and the app."""
    batch = f"batch {mem.batch_size}" if mem.batch_size else "the probe batch"
    opt_states = mem.optimizer_bytes // mem.grad_bytes if mem.grad_bytes else 0
    lines = [
        ("Parameters", human_bytes(mem.param_bytes), ""),
        ("Gradients", human_bytes(mem.grad_bytes), "trainable parameters only"),
        ("Optimizer state", human_bytes(mem.optimizer_bytes),
         f"{mem.optimizer.split(' (')[0]}: {opt_states} per trainable parameter" if opt_states else mem.optimizer.split(" (")[0]),
    ]
    if mem.buffer_bytes:
        lines.append(("Buffers", human_bytes(mem.buffer_bytes), ""))
    lines += [
        ("Activations", human_bytes(mem.activation_bytes),
         f"saved for backward at {batch} ({mem.activation_bytes:,} B)"),
        ("Training peak", human_bytes(mem.training_peak_bytes), f"in the {mem.peak_phase}"),
        ("Inference peak", human_bytes(mem.inference_peak_bytes), "eval, no autograd"),
    ]
    if mem.fit_bytes is not None:
        if mem.max_batch_size is None:
            lines.append((f"Fits {human_bytes(mem.fit_bytes)}", "—", "see the notes"))
        else:
            how = {True: "linear, checked at 3 sizes", False: "not linear: counted per size",
                   None: "assumed linear"}[mem.linear]
            per = f"{human_bytes(mem.activation_per_sample)} per sample, " if mem.activation_per_sample else ""
            lines.append((f"Fits {human_bytes(mem.fit_bytes)}", f"batch {mem.max_batch_size:,}", f"activations {per}{how}"))
    return lines


def memory_block(report: Report) -> RenderableType | None:
    mem = report.memory
    if mem is None:
        return None
    t = Table.grid(padding=(0, 2))
    t.add_column(style="dim")
    t.add_column(justify="right")
    t.add_column(style="dim")
    for label, amount, what in memory_lines(mem):
        t.add_row(label, Text(amount, style="bold" if label == "Training peak" else ""), what)
    title = Text("\nMemory", style="bold")
    title.append(f"  estimate · {mem.optimizer} · {mem.dtype} · batch {mem.batch_size or '?'}", style="dim")
    return Group(title, t)


def findings_table(findings: Sequence[Finding]) -> RenderableType:
    if not findings:
        return Text("No problems found.", style="green")
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    t.add_column("", no_wrap=True)
    t.add_column("Kind", no_wrap=True)
    t.add_column("Module", no_wrap=True, overflow="fold")
    t.add_column("What to look at", overflow="fold")
    for f in findings:
        where = source_block(f)  # the user's line, with a caret under the call
        t.add_row(
            Text(f"{SEVERITY_MARK[f.severity]} {f.severity}", style=SEVERITY_STYLE[f.severity]),
            f.kind,
            Text(f.module or "(root)", style="bold"),
            f.message if where is None else Group(Text(f.message), where),
        )
    return t


def notes_text(report: Report) -> RenderableType | None:
    if not report.probe.notes:
        return None
    t = Text()
    for n in report.probe.notes:
        t.append("note: ", style="dim")
        t.append(n + "\n")
    return t


EXTREMES = 3  # layers shown at each end of the update-ratio ranking


def extreme_update_ratios(report: Report) -> list[ModuleRow]:
    """The layers with the lowest and highest update ratios (each once), lowest first."""
    rated = sorted((r for r in report.modules if r.update_ratio is not None), key=lambda r: r.update_ratio or 0.0)
    if len(rated) <= 2 * EXTREMES:
        return rated
    return rated[:EXTREMES] + rated[-EXTREMES:]


def training_section(report: Report) -> RenderableType | None:
    """Loss from start to end, the optimizer and loss used, the most extreme update ratios."""
    tr = report.training
    if tr is None:
        return None
    parts: list[RenderableType] = [Text("\nTraining", style="bold")]
    g = Table.grid(padding=(0, 2))
    g.add_column(style="dim")
    g.add_column()
    ran = f"{tr.steps_run} of {tr.steps} steps" if tr.steps_run != tr.steps else f"{tr.steps} steps"
    g.add_row("run", f"{ran} on the probe batch · {tr.mode} mode · {tr.seconds:.2f} s")
    g.add_row("optimizer", tr.optimizer_label)
    g.add_row("loss", tr.loss_name)
    if tr.loss:
        line = Text(f"{tr.loss[0]:.4g} ")
        line.append(curve(tr.loss), style="green" if not tr.stopped else "red")
        end = tr.loss[-1]
        line.append(f" {end:.4g}")
        if math.isfinite(end) and tr.loss[0] > 0:
            line.append(f"  ({end / tr.loss[0]:.0%} of the start)", style="dim")
        g.add_row("loss curve", line)
        gn = Text(f"{sci(tr.grad_norm[0])} ")
        gn.append(curve(tr.grad_norm), style="cyan")
        gn.append(f" {sci(tr.grad_norm[-1])}")
        g.add_row("grad norm", gn)
    if tr.stopped:
        g.add_row("stopped", Text(tr.stopped, style="bold red"))
    parts.append(g)
    extremes = extreme_update_ratios(report)
    if extremes:
        t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title_justify="left",
                  title="Update ratio ||Δw||/||w|| per step (median), lowest and highest", title_style="dim")
        t.add_column("Module", no_wrap=True)
        t.add_column("Type", no_wrap=True, style="cyan")
        t.add_column("Update", justify="right", no_wrap=True)
        t.add_column("From init", justify="right", no_wrap=True)
        t.add_column("Grad norm", justify="right", no_wrap=True)
        for r in extremes:
            t.add_row(r.path or "(root)", r.type, sci(r.update_ratio), sci(r.distance_from_init), sci(r.train_grad_norm))
        parts.append(t)
    return Group(*parts)


def report_renderables(report: Report, depth: int | None = None,
                       width: int | None = None) -> list[RenderableType]:
    parts: list[RenderableType] = [header(report), module_table(report, depth, stats=report.probe.ran, width=width),
                                   totals(report)]
    mem = memory_block(report)
    if mem is not None:
        parts.append(mem)
    section = training_section(report)
    if section is not None:
        parts.append(section)
    if report.probe.ran:
        parts.append(Text("\nFindings", style="bold"))
        parts.append(findings_table(report.findings))
    n = notes_text(report)
    if n is not None:
        parts.append(n)
    return parts


# ---------------------------------------------------------------- export


def make_console(width: int | None = None, color: bool | None = None) -> Console:
    return Console(width=width, no_color=color is False, force_terminal=color, highlight=False, soft_wrap=False)


def _recorded(report: Report, depth: int | None, width: int, color: bool) -> Console:
    """A console that has printed the report into memory, ready for one of its exports."""
    c = Console(width=width, record=True, no_color=not color, force_terminal=color or None,
                highlight=False, file=io.StringIO())
    for part in report_renderables(report, depth, width):
        c.print(part)
    return c


def render_text(report: Report, depth: int | None = None, width: int = 120) -> str:
    """Plain aligned text: what a CI log or an issue gets."""
    return _recorded(report, depth, width, color=False).export_text(styles=False)


def to_markdown(report: Report, depth: int | None = None) -> str:
    m = report.model
    lines = [f"# {m.name} ({m.class_name})", ""]
    if report.inputs:
        lines.append(f"**Inputs:** {', '.join(report.inputs)}  ")
    p = report.probe
    if p.ran:
        lines.append(f"**Probe:** {'ok' if p.ok else 'failed'} · {p.mode} · {p.device} · backward {p.backward} · {p.seconds:.2f} s")
    lines += ["", "| Module | Type | Output | Params | Trainable | FLOPs | Grad norm |", "|---|---|---|---:|---|---:|---:|"]
    for r in report.modules:
        if depth is not None and r.depth > depth:
            continue
        name = ("&nbsp;&nbsp;" * r.depth) + (r.path.rsplit(".", 1)[-1] if r.path else "(root)")
        lines.append(f"| {name} | {r.type} | `{shape_text(r)}` | {r.params:,} | {r.trainable} | {human(r.flops_forward)} | {sci(r.grad_norm)} |")
    lines += ["", f"**Total params:** {m.total_params:,} · **trainable:** {m.trainable_params:,} · **frozen:** {m.frozen_params:,} · "
              f"**param memory:** {human_bytes(m.param_bytes)}", ""]
    if report.memory is not None:
        mem = report.memory
        lines += [f"## Memory (estimate · {mem.optimizer} · {mem.dtype} · batch {mem.batch_size or '?'})", "",
                  "| | | |", "|---|---:|---|"]
        lines += [f"| {label} | {amount} | {what} |" for label, amount, what in memory_lines(mem)]
    tr = report.training
    if tr is not None:
        lines += ["## Training", "",
                  f"{tr.steps_run} of {tr.steps} steps · {tr.optimizer_label} · loss: {tr.loss_name} · {tr.mode} mode"
                  f" · {tr.seconds:.2f} s  ", ""]
        if tr.loss:
            lines.append(f"Loss `{tr.loss[0]:.4g} {curve(tr.loss)} {tr.loss[-1]:.4g}` · grad norm "
                         f"`{sci(tr.grad_norm[0])} {curve(tr.grad_norm)} {sci(tr.grad_norm[-1])}`")
        if tr.stopped:
            lines.append(f"\n**Stopped:** {tr.stopped}")
        extremes = extreme_update_ratios(report)
        if extremes:
            lines += ["", "| Module | Type | Update ratio | From init | Dead at end |", "|---|---|---:|---:|---:|"]
            for r in extremes:
                dead = f"{r.end_dead_fraction:.1%}" if r.end_dead_fraction is not None else ""
                lines.append(f"| {r.path or '(root)'} | {r.type} | {sci(r.update_ratio)} | "
                             f"{sci(r.distance_from_init)} | {dead} |")
        lines.append("")
    if p.ran:
        lines.append("## Findings")
        lines.append("")
        if not report.findings:
            lines.append("No problems found.")
        for f in report.findings:
            lines.append(f"- **{f.severity}** `{f.kind}` at `{f.module or '(root)'}`: {f.message}")
            for _, src in finding_sources(f):
                lines += ["", "  ```", f"  {caret_lines(src).plain}".replace("\n", "\n  "), "  ```"]
    for n in p.notes:
        lines.append(f"\n> note: {n}")
    return "\n".join(lines) + "\n"


def export(report: Report, fmt: str, depth: int | None = None, width: int = 120) -> str:
    """The report as a string in one of FORMATS."""
    if fmt == "json":
        return json_text(report.to_dict()) + "\n"
    if fmt == "markdown":
        return to_markdown(report, depth)
    if fmt == "text":
        return render_text(report, depth, width)
    c = _recorded(report, depth, width, color=True)
    if fmt == "html":
        return c.export_html(inline_styles=True)
    if fmt == "svg":
        return c.export_svg(title=f"inspectr {report.model.name}")
    raise ValueError(f"unknown format {fmt!r}")


def write_export(report: Report, fmt: str, path: str | Path, depth: int | None = None) -> Path:
    p = Path(path)
    p.write_text(export(report, fmt, depth), encoding="utf-8")
    return p
