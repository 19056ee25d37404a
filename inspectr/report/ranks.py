"""Provides the ranks of a run under torch.distributed as data and as rich renderables: who ran
where (rank, local rank, host, device, steps, own work time, peak memory) and a ranks x layers
grid of any sampled statistic, each cell marked when it is far from the other ranks', so that
the odd rank stands out. The app's ranks screen shows the same grid."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from inspectr.core.runs.report import RunReport
from inspectr.core.runs.store import SAMPLE_FIELDS
from inspectr.report.formatting import sci

ODD_FACTOR = 2.0  # a cell is odd when it is this far (either way) from the median of its column's ranks


@dataclass(frozen=True)
class RankGrid:
    """One statistic at one sampled step: ``values[rank][module]`` (None: not measured there)."""

    stat: str
    step: int | None
    ranks: tuple[int, ...]
    modules: tuple[str, ...]
    values: dict[int, dict[str, float | None]]
    odd: frozenset[tuple[int, str]]  # (rank, module) cells far from the others


def rank_grid(report: RunReport, stat: str = "param_grad_norm", step: int | None = None) -> RankGrid:
    """The ranks x layers grid of ``stat`` (a sample field) at ``step`` (default: the latest
    sampled step every rank reached)."""
    if stat not in SAMPLE_FIELDS:
        raise ValueError(f"{stat!r} is not a sampled statistic; one of {', '.join(SAMPLE_FIELDS)}")
    by: dict[int, dict[int, dict[str, dict[str, object]]]] = {}
    for s, r, mods in report.rank_samples:
        by.setdefault(s, {})[r] = mods
    ranks = tuple(r["rank"] for r in report.ranks)
    if step is None:
        full = [s for s, rs in by.items() if set(rs) >= set(ranks)]
        step = max(full or by) if by else None
    at = by.get(step, {}) if step is not None else {}
    modules = tuple(m["path"] for m in report.modules
                    if any(_num(at.get(r, {}).get(m["path"], {}).get(stat)) is not None for r in ranks))
    values: dict[int, dict[str, float | None]] = {}
    for r in ranks:
        row = at.get(r, {})
        values[r] = {m: _num(row.get(m, {}).get(stat)) for m in modules}
    odd = set()
    for m in modules:
        col = {r: values[r][m] for r in ranks if values[r][m] is not None}
        for r, v in col.items():
            rest = [x for q, x in col.items() if q != r and x is not None and math.isfinite(x)]
            if v is None:
                continue
            if not math.isfinite(v) and rest:
                odd.add((r, m))
            elif rest:
                med = statistics.median(rest)
                if (med == 0 and abs(v) > 0) or (med != 0 and (abs(v / med) > ODD_FACTOR or abs(v / med) < 1 / ODD_FACTOR
                                                               or (v > 0) != (med > 0))):
                    odd.add((r, m))
    return RankGrid(stat, step, ranks, modules, values, frozenset(odd))


def _num(v: object) -> float | None:
    if isinstance(v, bool):
        return float(v)
    return float(v) if isinstance(v, (int, float)) else None


def grid_table(grid: RankGrid, limit: int = 40) -> RenderableType:
    t = Table(box=box.SIMPLE_HEAD)
    t.add_column("module", no_wrap=True)
    for r in grid.ranks:
        t.add_column(f"rank {r}", justify="right", no_wrap=True)
    for m in grid.modules[:limit]:
        cells = []
        for r in grid.ranks:
            v = grid.values[r][m]
            text = "" if v is None else sci(v)
            cells.append(Text(f"{text} !", style="bold red") if (r, m) in grid.odd else Text(text))
        t.add_row(m or "(root)", *cells)
    return Group(Text(f"{grid.stat} by rank at step {grid.step} (! marks a rank far from the others)", style="bold"), t)


def ranks_table(report: RunReport) -> RenderableType:
    """One row per rank: where it ran, its steps, its own work time and CUDA peak memory."""
    t = Table(box=box.SIMPLE_HEAD)
    for name in ("rank", "local", "host", "device", "steps", "work/step", "peak memory", "findings"):
        t.add_column(name, justify="right" if name not in ("host", "device") else "left", no_wrap=True)
    for info in report.ranks:
        r = info["rank"]
        rows = [s for s in report.rank_steps if s["rank"] == r]
        work = [s["work"] for s in rows if s.get("work") is not None]
        mem = max((s["peak_memory"] for s in rows if s.get("peak_memory") is not None), default=None)
        found = sum(1 for f in report.findings if f.detail.get("rank") == r or r in f.detail.get("ranks", ()))
        t.add_row(str(r), str(info.get("local_rank", "")), str(info.get("host", "")), str(info.get("device", "")),
                  f"{len(rows):,}", f"{statistics.median(work) * 1e3:.3g} ms" if work else "—",
                  f"{mem / 2**20:,.0f} MiB" if mem is not None else "—", str(found))
    return t


def ranks_renderables(report: RunReport, stat: str = "param_grad_norm") -> list[RenderableType]:
    """The ranks section of the text report; nothing for a run of one process."""
    if len(report.ranks) < 2:
        return []
    return [Text("ranks", style="bold"), ranks_table(report), grid_table(rank_grid(report, stat))]
