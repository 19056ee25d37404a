"""Provides the pictures of a watched run that the run app shows (pure functions, rich only):
the heatmap of layers x sampled steps, a module's history and latest values, the watch's cost,
the status line, and the table of the runs in a folder."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from typing import Any

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from inspectr.core.runs.listing import RunSummary
from inspectr.core.runs.report import RunReport
from inspectr.report.formatting import SEVERITY_MARK, SEVERITY_STYLE, curve, sci

# the statistics the heatmap and the sparklines switch between: (sample field, title, log scale)
STATISTICS: tuple[tuple[str, str, bool], ...] = (
    ("param_grad_norm", "gradient norm", True),
    ("update_ratio", "update ratio", True),
    ("dead_fraction", "dead fraction", False),
)
LATEST = (("param_grad_norm", "grad"), ("update_ratio", "upd"), ("dead_fraction", "dead"))
# a sequential palette, dark to bright (viridis): readable on dark and light terminals alike
PALETTE = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779", "#6ece58", "#b5de2b",
           "#fde725")
STATUS_STYLE = {"running": "bold cyan", "finished": "green", "crashed": "bold red", "halted": "bold red",
                "interrupted": "yellow"}


def statistic(key: str) -> tuple[str, str, bool]:
    return next(s for s in STATISTICS if s[0] == key)


def sampled_paths(report: RunReport) -> list[str]:
    """Modules with sampled values, in model order (the heatmap's rows)."""
    seen = {p for _, mods in report.samples for p in mods}
    return [m["path"] for m in report.modules if m["path"] in seen]


def history(report: RunReport, path: str, key: str) -> list[tuple[int, float | None]]:
    """(step, value) of one module's statistic at every sampled step that has it."""
    return [(s, mods[path].get(key)) for s, mods in report.samples if path in mods]


def latest(report: RunReport, path: str) -> tuple[int, dict[str, Any]] | None:
    for s, mods in reversed(report.samples):
        if path in mods:
            return s, mods[path]
    return None


def spark_values(report: RunReport, path: str, key: str) -> list[float]:
    """A module's history as plottable floats: log10 for the log-scaled statistics, missing or
    non-finite values dropped (Textual's Sparkline takes finite numbers only)."""
    _, _, log = statistic(key)
    out = []
    for _, v in history(report, path, key):
        if v is None or not math.isfinite(v) or (log and v <= 0):
            continue
        out.append(math.log10(v) if log else v)
    return out


def _shown(field: str, v: Any) -> str:
    return f"{v:.0%}" if field == "dead_fraction" and math.isfinite(v) else sci(v)


def _bad(v: Any) -> bool:
    return isinstance(v, float) and not math.isfinite(v)


def _nonfinite(values: dict[str, Any]) -> bool:
    return bool(values.get("nonfinite")) or any(_bad(values.get(f)) for f, _ in LATEST)


def nonfinite_since(report: RunReport, path: str) -> tuple[int | None, tuple[int, dict[str, Any]] | None]:
    """(the first sampled step of the module's latest run of non-finite samples, or None when its
    latest sample is finite; (step, values) of its last finite sample before that, or None)."""
    since: int | None = None
    finite: tuple[int, dict[str, Any]] | None = None
    for s, mods in report.samples:
        values = mods.get(path)
        if values is None:
            continue
        if _nonfinite(values):
            if since is None:
                since = s
        else:
            since, finite = None, (s, values)
    return since, finite


def latest_text(report: RunReport, path: str, key: str, spark: int = 8) -> Text:
    """A tree label's tail: the module's latest values and a small history of ``key``; a module
    gone non-finite says by which sampled step (the first of its latest non-finite run: the
    findings name the exact step) and what it read at its last finite sample."""
    got = latest(report, path)
    t = Text()
    if got is None:
        return t
    _, values = got
    for field, title in LATEST:
        v = values.get(field)
        if v is None:
            continue
        t.append(f" {title} ", style="dim")
        t.append(_shown(field, v), style="bold red" if _bad(v) else "")
    if _nonfinite(values):
        since, finite = nonfinite_since(report, path)
        t.append(f" ✖ non-finite by step {since}", style="bold red")
        if finite is not None:
            step, before = finite
            read = [f"{title} {_shown(f, before[f])}" for f, title in LATEST if before.get(f) is not None]
            t.append(f" (step {step}: {' '.join(read)})" if read else f" (finite at step {step})", style="dim")
    vals = spark_values(report, path, key)
    if len(vals) > 1:
        t.append(" " + curve(vals[-spark * 4:], width=spark), style="cyan")
    return t


def thin(n: int, cells: int, keep: int | None = None) -> list[int]:
    """Indices of ``n`` columns to draw in ``cells``: all when they fit, else evenly spaced ones
    that always hold the first, the last and ``keep``."""
    if n <= cells:
        return list(range(n))
    cells = max(cells, 2)
    picked = {round(i * (n - 1) / (cells - 1)) for i in range(cells)}
    if keep is not None and 0 <= keep < n and keep not in picked:
        nearest = min(picked - {0, n - 1} or picked, key=lambda i: abs(i - keep))
        picked = (picked - {nearest}) | {keep}
    return sorted(picked)


def colour(v: float | None, lo: float, hi: float, log: bool) -> tuple[str, str]:
    """(character, style) of one heatmap cell."""
    if v is None:
        return "·", "dim"
    if not math.isfinite(v):
        return "✖", "bold red"
    if log:
        if v <= 0:
            return "0", "dim"
        v = math.log10(v)
    frac = 0.0 if hi <= lo else (v - lo) / (hi - lo)
    return "█", PALETTE[min(len(PALETTE) - 1, max(0, int(frac * len(PALETTE))))]


def value_range(values: Sequence[float | None], log: bool) -> tuple[float, float]:
    vals = [v for v in values if v is not None and math.isfinite(v) and (not log or v > 0)]
    if not vals:
        return 0.0, 1.0
    if log:
        vals = [math.log10(v) for v in vals]
    return min(vals), max(vals)


def heatmap(report: RunReport, key: str, width: int, *, step: int | None = None,
            module: str | None = None) -> RenderableType:
    """See ``heatmap_lines``; the picture alone."""
    return heatmap_lines(report, key, width, step=step, module=module)[0]


def heatmap_lines(report: RunReport, key: str, width: int, *, step: int | None = None,
                  module: str | None = None) -> tuple[RenderableType, dict[str, int]]:
    """Layers (rows) x sampled steps (columns) of one statistic, coloured on a log scale (the
    dead fraction: linear), thinned to ``width`` columns; ``step`` (or the sampled step nearest
    it, the later one on a tie) is marked above its column and ``module``'s row is highlighted.
    Returns the picture and the line of each module's row in it (to scroll to)."""
    _, title, log = statistic(key)
    if not report.samples:
        return Text("no sampled step yet: the first sample is written at step 0's end", style="dim"), {}
    steps = [s for s, _ in report.samples]
    every_path = sampled_paths(report)
    label_w = min(max(len(p or "(root)") for p in every_path), max(8, width // 3))
    cells = max(2, width - label_w - 1)
    if step is not None and step not in steps:  # a finding's step between samples: the nearest sample
        wanted = step
        step = min(steps, key=lambda s: (abs(s - wanted), s < wanted))
    keep = steps.index(step) if step in steps else None
    cols = thin(len(steps), cells, keep)
    per = max(1, min(3, cells // len(cols)))  # wide terminals: 2-3 characters per sampled step
    shown = [report.samples[i][1] for i in cols]
    # rows: the modules that have the statistic (or went non-finite) at a drawn step
    paths = [p for p in every_path
             if any(p in mods and (mods[p].get(key) is not None or mods[p].get("nonfinite")) for mods in shown)]
    if not paths:
        return Text(f"no module has a {title} yet", style="dim"), {}
    lo, hi = value_range([mods.get(p, {}).get(key) for mods in shown for p in paths], log)
    rows = []
    marker = Text(" " * (label_w + 1))
    for i in cols:
        marker.append(("▼" if steps[i] == step else " ") * per, style="bold yellow")
    if step is not None:
        rows.append(marker)
    line_of = {}
    for p in paths:
        line_of[p] = len(rows)
        name = p or "(root)"
        name = name if len(name) <= label_w else "…" + name[-(label_w - 1):]
        line = Text(name.ljust(label_w) + " ", style="reverse" if p == module else "")
        run_style, run = "", ""
        for mods in shown:  # equal neighbours go in one span: a wide heatmap has thousands of cells
            values = mods.get(p, {})
            v = values.get(key)
            ch, style = colour(math.nan if v is None and values.get("nonfinite") else v, lo, hi, log)
            if style != run_style and run:
                line.append(run, style=run_style)
                run = ""
            run_style, run = style, run + ch * per
        line.append(run, style=run_style)
        rows.append(line)
    axis = Text(" " * (label_w + 1))
    first, last = f"step {steps[cols[0]]}", str(steps[cols[-1]])
    span = len(cols) * per
    axis.append(first + " " * max(1, span - len(first) - len(last)) + last, style="dim")
    rows.append(axis)
    rows.append(legend(title, lo, hi, log, len(cols), len(steps), width))
    return Group(*rows), line_of


def legend(title: str, lo: float, hi: float, log: bool, shown: int, total: int, width: int = 200) -> Text:
    """The colour scale and what the marks mean, on a second line when one is too narrow."""
    t = Text(f"{title}{' (log)' if log else ''}: ", style="bold")
    t.append(sci(10**lo if log else lo) + " ", style="dim")
    for c in PALETTE:
        t.append("█", style=c)
    t.append(" " + sci(10**hi if log else hi), style="dim")
    extra = Text("· none  ✖ non-finite", style="dim")
    if shown < total:
        extra.append(f"  ({shown} of {total} sampled steps)", style="dim")
    return Text("\n" if t.cell_len + 2 + extra.cell_len > width else "  ").join([t, extra])


def step_seconds(report: RunReport) -> float:
    return sum(s["seconds"] or 0.0 for s in report.steps)


def cost_line(report: RunReport) -> str:
    """What the watch cost the training: its own measured seconds once the run has ended; while
    it runs, the extra time of the sampled steps over the median step."""
    total = step_seconds(report)
    own = report.run.get("watch_seconds")
    if own is not None:
        if total <= 0:
            return f"watch cost {own:.3g} s"
        return f"watch cost {own / total:.1%} ({own:.3g} s of {total:.3g} s in steps)"
    sampled = {s for s, _ in report.samples}
    secs = [(s["step"] in sampled, s["seconds"]) for s in report.steps if s["seconds"] is not None]
    plain = [x for was, x in secs if not was]
    if total <= 0 or not plain or not any(was for was, _ in secs):
        return "watch cost: measured as the run goes"
    extra_each = statistics.median([x for was, x in secs if was]) - statistics.median(plain)
    extra = max(0.0, extra_each * len(sampled))
    # estimated: (median sampled step - median other step) x samples; the exact figure comes at the end
    return f"watch cost ≈ {extra / total:.1%} ({extra:.3g} s of {total:.3g} s)"


def status_text(report: RunReport) -> Text:
    """The run's one-line header: folder, model, status, steps, sampled steps, findings."""
    run = report.run
    status = str(run.get("status", "?"))
    t = Text()
    t.append(report.path, style="bold")
    t.append(f" · {run.get('model', '?')} · {run.get('optimizer') or 'no optimizer'} · ")
    t.append(status, style=STATUS_STYLE.get(status, ""))
    last = report.steps[-1]["step"] if report.steps else None
    t.append(f" · step {last if last is not None else '—'}")
    t.append(f"\n{len(report.steps):,} steps · {len(report.samples):,} sampled (every {run.get('every', '?')})",
             style="dim")
    errors = sum(f.severity == "error" for f in report.findings)
    if report.findings:
        t.append(f" · {len(report.findings)} finding(s)", style="bold red" if errors else "yellow")
    return t


def finding_text(f: Any) -> Text:
    step = f.detail.get("step")
    t = Text(SEVERITY_MARK[f.severity] + " ", style=SEVERITY_STYLE[f.severity])
    t.append(f"step {step if step is not None else '—'} ", style="bold")
    t.append(f"{f.kind} ", style=SEVERITY_STYLE[f.severity])
    t.append(f"{f.module or '(root)'}: ", style="bold")
    t.append(f.message)
    return t


def started_text(started: float | None) -> str:
    """Local start time: month-day hour:minute, with the year when it is not this year's."""
    if started is None:
        return "—"
    when = time.localtime(started)
    return time.strftime("%m-%d %H:%M" if when.tm_year == time.localtime().tm_year else "%Y-%m-%d %H:%M", when)


def runs_table(runs: Sequence[RunSummary], folder: str) -> RenderableType:
    """The runs in a folder: path, model, status, steps, last loss, the error (✖) and warning (▲)
    findings the watch recorded, start time; fits 80 columns for paths like runs/sweep/exp1."""
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True, padding=(0, 1),
              title=f"{len(runs)} run(s) in {folder}", title_justify="left")
    t.add_column("run", overflow="fold")  # the one column that wraps: the figures stay whole
    t.add_column("model", no_wrap=True, max_width=16, overflow="ellipsis")
    t.add_column("status", no_wrap=True, min_width=8)
    t.add_column("steps", justify="right", no_wrap=True, min_width=5)
    t.add_column("last loss", justify="right", no_wrap=True, min_width=9)
    t.add_column("findings", no_wrap=True, min_width=8)
    t.add_column("started", no_wrap=True, min_width=11)
    for r in runs:
        status = Text(r.status, style=STATUS_STYLE.get(r.status, ""))
        if r.note:
            status.append("?", style="bold yellow")
        found = Text(f"✖ {r.errors}", style="bold red" if r.errors else "dim")
        found.append(f" ▲ {r.warnings}", style="yellow" if r.warnings else "dim")
        t.add_row(r.path, r.model, status, f"{r.steps:,}", sci(r.last_loss) if r.last_loss is not None else "—",
                  found, started_text(r.started))
    notes = [f"{r.path}: {r.note or r.problem}" for r in runs if r.note or r.problem]
    return Group(t, *[Text(n, style="yellow") for n in notes]) if notes else t
