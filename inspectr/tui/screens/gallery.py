"""Provides the gallery screen: the sample models, healthy and sick, for a bare ``inspectr``."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, OptionList, Static
from textual.widgets.option_list import Option


class GalleryScreen(Screen[str | None]):
    """Pick a sample model; dismisses with its name (or None)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss_none", "Close"),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, entries: list[tuple[str, str, bool]], *, can_go_back: bool = False) -> None:
        """``entries``: (name, description, healthy) in gallery order."""
        super().__init__()
        self.entries = entries
        self.can_go_back = can_go_back

    def compose(self) -> ComposeResult:
        with Vertical(id="gallery"):
            yield Static(
                Text.assemble(
                    ("inspectr", "bold"),
                    " · pick a sample model to inspect, or run ",
                    ("inspectr resnet18", "bold"),
                    " / ",
                    ("inspectr path/model.py:Net", "bold"),
                ),
                id="gallery-intro",
            )
            options: list[Option | None] = []
            width = max((len(e[0]) for e in self.entries), default=10)
            for title, healthy in (
                ("Healthy", True),
                ("Sick on purpose: each has a defect the probe finds", False),
            ):
                group = [e for e in self.entries if e[2] == healthy]
                if not group:
                    continue
                if options:
                    options.append(None)
                options.append(Option(Text(title, style="bold underline"), disabled=True))
                for name, description, _ in group:
                    prompt = Table.grid(padding=(0, 2), expand=True)
                    prompt.add_column(width=width, no_wrap=True)
                    prompt.add_column(ratio=1)
                    prompt.add_row(Text(name, style="bold"), Text(description, style="dim"))
                    options.append(Option(prompt, id=name))
            yield OptionList(*options, id="gallery-list")
        yield Footer()

    def on_mount(self) -> None:
        lst = self.query_one(OptionList)
        lst.border_title = f"Sample gallery · {len(self.entries)} models"
        lst.focus()
        for i in range(lst.option_count):
            if not lst.get_option_at_index(i).disabled:
                lst.highlighted = i
                break

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        if self.can_go_back:
            self.dismiss(None)
        else:
            self.app.exit(0)
