"""Provides the runs picker: the runs in a folder, one line each; choosing one opens it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option

from inspectr.core.runs.listing import RunSummary
from inspectr.report.formatting import sci
from inspectr.report.run_views import STATUS_STYLE, started_text


def run_line(r: RunSummary, name: str, width: int) -> Text:
    """One run on one line (80 columns hold it for short paths): the full table is ``--report``'s."""
    t = Text(name.ljust(width) + " ", style="bold")
    t.append(f"{r.model[:12]:<12} ")
    t.append(f"{r.status + ('?' if r.note else ''):<11}", style=STATUS_STYLE.get(r.status, ""))
    t.append(f"{r.steps:>6,} steps loss {sci(r.last_loss) if r.last_loss is not None else '—':<8}")
    t.append(f"✖{r.errors}", style="bold red" if r.errors else "dim")
    t.append(f" ▲{r.warnings}", style="yellow" if r.warnings else "dim")
    t.append(f" {started_text(r.started)}", style="dim")
    return t


class RunPickerScreen(Screen[str | None]):
    """Pick a run of ``folder``; dismisses with its path, or None (quit)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "dismiss_none", "Quit")]

    def __init__(self, folder: str, runs: Sequence[RunSummary]) -> None:
        super().__init__()
        self.folder = folder
        self.runs = tuple(runs)

    def compose(self) -> ComposeResult:
        yield Static(Text(f"{len(self.runs)} run(s) in {self.folder} · Enter opens one", style="bold"),
                     id="picker-title")
        names = [self._below(r.path) for r in self.runs]
        width = max((len(n) for n in names), default=10)
        yield OptionList(*[Option(run_line(r, n, width), id=r.path) for r, n in zip(self.runs, names)],
                         id="run-picker")
        yield Footer()

    def _below(self, path: str) -> str:
        """The run's path below the folder (the title names the folder)."""
        try:
            return str(Path(path).relative_to(self.folder))
        except ValueError:
            return path

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(self.runs[event.option_index].path)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
