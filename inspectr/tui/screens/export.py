"""Provides the export dialog: pick a report format; the app writes the file."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import OptionList
from textual.widgets.option_list import Option

EXTENSIONS = {"text": "txt", "markdown": "md", "json": "json", "html": "html", "svg": "svg"}
ABOUT = {
    "text": "aligned plain text, for a CI log or an issue",
    "markdown": "tables for a README or a pull request",
    "json": "machine-readable, stable schema inspectr/1",
    "html": "a coloured page",
    "svg": "a coloured picture of the report",
}


class ExportDialog(ModalScreen[str | None]):
    """Dismisses with a format name from ``EXTENSIONS`` or None."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q", "dismiss_none", "Cancel")]

    def __init__(self, stem: str) -> None:
        super().__init__()
        self.stem = stem

    def compose(self) -> ComposeResult:
        options = []
        for fmt, ext in EXTENSIONS.items():
            prompt = Text(f"{fmt:<9}", style="bold")
            prompt.append(f"{self.stem}.{ext}", style="")
            prompt.append(f"\n         {ABOUT[fmt]}", style="dim")
            options.append(Option(prompt, id=fmt))
        yield OptionList(*options, id="export-list")

    def on_mount(self) -> None:
        lst = self.query_one(OptionList)
        lst.border_title = "Export the report"
        lst.border_subtitle = "enter to write · esc to cancel"
        lst.highlighted = 0
        lst.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
