"""Provides the export dialog (pick a report format) and ``Exporter``, the app's part that
writes the file in a worker."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import ModalScreen
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from inspectr.tui.base import InspectorBase

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


class Exporter(InspectorBase):
    """Writes the report, with the freeze state as it is now, in the format the dialog returns."""

    def action_export(self) -> None:
        if self.report is None:
            self.notify("Nothing to export yet: the model is still loading.", severity="warning")
            return

        def chosen(fmt: str | None) -> None:
            if fmt:
                self._export(fmt, Path.cwd() / f"{self._file_stem()}.{EXTENSIONS[fmt]}")

        self.push_screen(ExportDialog(self._file_stem()), chosen)

    @work(thread=True, exclusive=True, exit_on_error=False, group="export")
    def _export(self, fmt: str, path: Path) -> None:
        from inspectr.report.render import write_export

        report, trainable = self.report, self._trainable
        if report is None or trainable is None:
            return
        try:
            write_export(trainable.report_view(report), fmt, path)
        except OSError as exc:
            self.call_from_thread(
                self.notify, f"Could not write {path}: {exc}", severity="error", markup=False
            )
            return
        note = "" if report.probe.ran else " (structure only: the probe had not finished)"
        self.call_from_thread(
            self.notify,
            f"Wrote the {fmt} report to {path}{note}",
            title="Exported",
            markup=False,
            timeout=8,
        )
