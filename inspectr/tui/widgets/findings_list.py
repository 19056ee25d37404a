"""Provides the findings list: every problem the probe found, worst first; selecting one names its module."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from inspectr.core.result import Finding
from inspectr.report.formatting import SEVERITY_MARK, SEVERITY_STYLE

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


class FindingsList(OptionList):
    """Findings sorted by severity; set with ``show_findings`` or ``show_state``."""

    class FindingSelected(Message):
        """The user picked a finding: the app shows its module."""

        def __init__(self, path: str) -> None:
            super().__init__()
            self.path = path

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._paths: list[str] = []
        self.findings: tuple[Finding, ...] = ()

    def show_state(self, text: str, style: str = "dim") -> None:
        """No findings to list (yet): one quiet line."""
        self.findings = ()
        self._paths = []
        self.set_options([Option(Text(text, style=style), disabled=True)])
        self.border_title = "Findings"

    def show_findings(self, findings: Sequence[Finding], failure: str | None = None) -> None:
        """List ``findings`` worst first; ``failure`` is a probe that could not run at all."""
        ordered = sorted(findings, key=lambda f: SEVERITY_ORDER.get(f.severity, 3))
        self.findings = tuple(ordered)
        options: list[Option] = []
        self._paths = []
        if failure:
            options.append(
                Option(
                    Text(
                        f"{SEVERITY_MARK['error']} probe did not run: {failure}", style="bold red"
                    ),
                    id="f-failure",
                )
            )
            self._paths.append("")
        for i, f in enumerate(ordered):
            prompt = Text()
            prompt.append(
                f"{SEVERITY_MARK.get(f.severity, '●')} {f.kind} ",
                style=SEVERITY_STYLE.get(f.severity, ""),
            )
            prompt.append(f.module or "(root)", style="bold")
            prompt.append(f"\n  {f.message}", style="dim")
            options.append(Option(prompt, id=f"f-{i}"))
            self._paths.append(f.module)
        if not options:
            options.append(Option(Text("✓ No problems found.", style="green"), disabled=True))
        self.set_options(options)
        if self._paths:
            self.highlighted = 0
        errors = sum(f.severity == "error" for f in ordered) + (1 if failure else 0)
        count = len(ordered) + (1 if failure else 0)
        self.border_title = f"Findings ({count})" if count else "Findings"
        self.set_class(errors > 0, "-has-errors")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if 0 <= event.option_index < len(self._paths):
            self.post_message(self.FindingSelected(self._paths[event.option_index]))
