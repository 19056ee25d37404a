"""Provides ``RanksScreen``: the ranks of a run under torch.distributed. Pick a rank (``r``), pick
the statistic (``s``) of a ranks x layers grid where a rank far from the others is marked, and see
every finding with its rank. Self-contained: push it with a loaded ``RunReport``."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from inspectr.core.runs.report import RunReport
from inspectr.core.runs.store import SAMPLE_FIELDS
from inspectr.report.formatting import sci
from inspectr.report.ranks import rank_grid


class RanksScreen(Screen[None]):
    """The ranks x layers grid of one statistic, the rank picked, and the findings by rank."""

    DEFAULT_CSS = """
    RanksScreen #ranks-title { height: 1; padding: 0 1; }
    RanksScreen #ranks-grid { height: 1fr; }
    RanksScreen #ranks-findings { height: 10; border-top: solid $primary; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("r", "next_rank", "Pick rank", tooltip="Show the next rank (or all ranks)"),
        Binding("s", "next_stat", "Statistic", tooltip="Show the next sampled statistic in the grid"),
        Binding("escape,q", "app.pop_screen", "Back"),
    ]

    class RankPicked(Message):
        """A rank was picked (None: all ranks)."""

        def __init__(self, rank: int | None) -> None:
            super().__init__()
            self.rank = rank

    def __init__(self, report: RunReport, stat: str = "param_grad_norm") -> None:
        super().__init__()
        self.report = report
        self.ranks = [r["rank"] for r in report.ranks]
        self.rank: int | None = None  # None: every rank
        self.stat = stat

    def compose(self) -> ComposeResult:
        yield Static(id="ranks-title")
        yield DataTable(id="ranks-grid", zebra_stripes=True, cursor_type="row")
        yield DataTable(id="ranks-findings", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        self.refresh_views()
        self.query_one("#ranks-grid", DataTable).focus()

    def action_next_rank(self) -> None:
        order: list[int | None] = [None, *self.ranks]
        self.rank = order[(order.index(self.rank) + 1) % len(order)]
        self.post_message(self.RankPicked(self.rank))
        self.refresh_views()

    def action_next_stat(self) -> None:
        self.stat = SAMPLE_FIELDS[(SAMPLE_FIELDS.index(self.stat) + 1) % len(SAMPLE_FIELDS)]
        self.refresh_views()

    def refresh_views(self) -> None:
        grid = rank_grid(self.report, self.stat)
        shown = [r for r in grid.ranks if self.rank is None or r == self.rank]
        hosts = {r["rank"]: r.get("host", "") for r in self.report.ranks}
        picked = "all ranks" if self.rank is None else f"rank {self.rank} ({hosts.get(self.rank, '')})"
        self.query_one("#ranks-title", Static).update(Text.assemble(
            (f"{self.stat}", "bold"), f" at step {grid.step} · {picked} · {len(grid.ranks)} ranks · ",
            ("!", "bold red"), " a rank far from the others"))
        table = self.query_one("#ranks-grid", DataTable)
        table.clear(columns=True)
        table.add_column("module", key="module")
        for r in shown:
            table.add_column(f"rank {r}", key=f"rank{r}")
        for m in grid.modules:
            cells: list[Text] = []
            for r in shown:
                v = grid.values[r][m]
                text = "" if v is None else sci(v)
                cells.append(Text(f"{text} !", style="bold red") if (r, m) in grid.odd else Text(text))
            table.add_row(m or "(root)", *cells, key=m)
        found = self.query_one("#ranks-findings", DataTable)
        found.clear(columns=True)
        found.add_columns("rank", "kind", "step", "module", "what")
        for f in self.report.findings:
            ranks = f.detail.get("ranks") or ([f.detail["rank"]] if "rank" in f.detail else [])
            if self.rank is not None and ranks and self.rank not in ranks:
                continue
            found.add_row(", ".join(str(r) for r in ranks) or "all", f.kind, str(f.detail.get("step", "")),
                          f.module or "(root)", f.message[:160])
