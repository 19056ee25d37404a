"""Provides the help screen: every key with its description, and what the tree's marks mean."""

from __future__ import annotations

from typing import ClassVar

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

LEGEND = (
    ("●", "trainable (requires_grad on every parameter below)"),
    ("❄", "frozen: no parameter below trains"),
    ("◐", "partial: some parameters below train"),
    ("⇄", "shared: the same module is registered under several paths"),
    ("✖ ▲ ●", "a finding at this module: error, warning, info"),
    ("▲2 inside", "findings further down a collapsed branch"),
)


class HelpScreen(ModalScreen[None]):
    """Keys (``keys``: (key, description) pairs from the app's bindings) and the legend."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close help"),
    ]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        keys = Table.grid(padding=(0, 2))
        keys.add_column(style="bold", no_wrap=True)
        keys.add_column()
        for key, description in self.keys:
            keys.add_row(key, description)
        legend = Table.grid(padding=(0, 2))
        legend.add_column(no_wrap=True)
        legend.add_column()
        for mark, meaning in LEGEND:
            legend.add_row(mark, meaning)
        body = Group(
            Text("Keys", style="bold underline"),
            keys,
            Text(""),
            Text("Marks in the module tree", style="bold underline"),
            legend,
            Text(""),
            Text(
                "Freezing changes the model in memory only; `s` saves the plan to apply in training.",
                style="dim",
            ),
        )
        with VerticalScroll(id="help-box"):
            yield Static(body)

    def on_mount(self) -> None:
        self.query_one("#help-box").border_title = "inspectr · help"
        self.query_one("#help-box").border_subtitle = "esc to close"
