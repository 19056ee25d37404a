"""Provides the text report of a watched run (``inspectr RUN --report`` / ``--check``): the run's
facts and the watch's own cost, the loss and scalar curves, the modules' latest sampled values
with their history, and the findings by step (rich only)."""

from __future__ import annotations

import math

from rich import box
from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from inspectr.core.runs.report import RunReport
from inspectr.report.formatting import SEVERITY_MARK, SEVERITY_STYLE, curve, sci
from inspectr.report.ranks import ranks_renderables
from inspectr.report.render import findings_table, make_console
from inspectr.report.run_views import step_seconds
from inspectr.report.training import loss_chart

COLUMNS = (("param_grad_norm", "param grad"), ("update_ratio", "update ratio"), ("distance", "from start"),
           ("grad_norm", "output grad"), ("dead_fraction", "dead"))
HISTORY = 24  # cells of a module's update-ratio history


def header(report: RunReport) -> RenderableType:
    run = report.run
    t = Text()
    t.append(f"{report.path}", style="bold")
    t.append(f"  {run.get('model', '?')} · {run.get('optimizer') or 'no optimizer'} · {run.get('status', '?')}")
    steps = len(report.steps)
    t.append(f"\n{steps:,} steps · {len(report.samples):,} sampled (every {run.get('every', '?')}) · "
             f"device {run.get('device', '?')} · {run.get('params', 0):,} parameters", style="dim")
    total = step_seconds(report)
    own = run.get("watch_seconds")
    if own is not None and total > 0:
        t.append(f"\nwatch cost: {own:.3g} s of {total:.3g} s in steps ({own / total:.1%})", style="dim")
    for e in report.events:
        t.append(f"\nwatch part switched off at step {e['step']}: {e['part']} ({e['message']})", style="yellow")
    return t


def curves(report: RunReport, width: int) -> RenderableType:
    losses = [math.nan if v is None else v for _, v in report.loss]
    parts: list[RenderableType] = [Text("loss", style="bold"), loss_chart(losses, height=6, width=max(20, width - 12))]
    norms = [math.nan if s["grad_norm"] is None else s["grad_norm"] for s in report.steps]
    rows = [("grad norm", norms)] + [(name, [math.nan if v is None else v for _, v in vals])
                                      for name, vals in report.scalars.items()]
    t = Table(box=None, show_header=False, pad_edge=False)
    t.add_column(style="bold", no_wrap=True)
    t.add_column(no_wrap=True)
    t.add_column(style="dim", no_wrap=True)
    for name, values in rows:
        finite = [v for v in values if math.isfinite(v)]
        span = f"{sci(min(finite))} … {sci(max(finite))}" if finite else "—"
        t.add_row(name, curve(values, width=max(10, width - 40)), span)
    parts.append(t)
    return Group(*parts)


def module_table(report: RunReport, limit: int = 60) -> RenderableType:
    """Modules with sampled values: the latest of each, and the update-ratio history."""
    if not report.samples:
        return Text("no sampled step yet", style="dim")
    step, latest = report.samples[-1]
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, title=f"modules at step {step}",
              title_justify="left")
    t.add_column("module", no_wrap=True, overflow="fold")
    for _, title in COLUMNS:
        t.add_column(title, justify="right", no_wrap=True)
    t.add_column("update ratio over the samples", no_wrap=True)
    owners = [m["path"] for m in report.modules if m["trainable"] > 0]
    shown = [p for p in owners if p in latest][:limit]
    for path in shown:
        values = latest[path]
        history = [vals.get(path, {}).get("update_ratio") for _, vals in report.samples]
        logs = [math.log10(v) if v else math.nan for v in history if v is not None]
        t.add_row(path or "(root)", *[_cell(values.get(key)) for key, _ in COLUMNS], curve(logs, width=HISTORY))
    more = len([p for p in owners if p in latest]) - len(shown)
    if more > 0:
        t.caption = f"{more} more modules: see --format json"
    return t


def _cell(v: object) -> str:
    return sci(v) if isinstance(v, float) else "" if v is None else str(v)


def run_renderables(report: RunReport, width: int = 120) -> list[RenderableType]:
    return [header(report), Text(), curves(report, width), Text(), module_table(report), Text(),
            *ranks_renderables(report), findings_table(report.findings)]


def render_run_text(report: RunReport, width: int = 120) -> str:
    console = make_console(width=width, color=False)
    with console.capture() as cap:
        for part in run_renderables(report, width):
            console.print(part)
    return cap.get()


def print_run_check(report: RunReport, console: Console | None = None) -> None:
    """One line per finding, with its step, and a verdict: what a CI smoke-training job needs."""
    c = console or Console(highlight=False, soft_wrap=True)
    for f in report.findings:
        step = f.detail.get("step")
        c.print(Text(f"{SEVERITY_MARK[f.severity]} {f.severity}", style=SEVERITY_STYLE[f.severity])
                + Text(f"  {f.kind}  step {step}  {f.module or '(root)'}: {f.message}"))
    errors = sum(f.severity == "error" for f in report.findings)
    verdict = (f"{report.path}: {len(report.steps):,} steps, {len(report.findings)} finding(s), {errors} error(s)")
    c.print(Text(verdict, style="red" if errors else "green"))

