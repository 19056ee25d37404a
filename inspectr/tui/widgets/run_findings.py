"""Provides the run's findings list: each with its step; selecting one names its module and step."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.message import Message
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from inspectr.core.result import Finding
from inspectr.report.run_views import finding_text


class RunFindings(OptionList):
    """The run's findings, worst first (as ``load_run`` orders them)."""

    class FindingSelected(Message):
        """The user picked a finding: the app moves the tree to ``path`` and the heatmap to ``step``."""

        def __init__(self, path: str, step: int | None) -> None:
            super().__init__()
            self.path = path
            self.step = step

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.findings: tuple[Finding, ...] = ()

    def show(self, findings: Sequence[Finding]) -> None:
        keep = self.highlighted
        self.findings = tuple(findings)
        if not self.findings:
            self.set_options([Option(Text("✓ no finding so far", style="green"), disabled=True)])
        else:
            self.set_options([Option(finding_text(f), id=f"f-{i}") for i, f in enumerate(self.findings)])
            self.highlighted = keep if keep is not None and keep < len(self.findings) else 0
        errors = sum(f.severity == "error" for f in self.findings)
        self.border_title = f"Findings ({len(self.findings)})" if self.findings else "Findings"
        self.set_class(errors > 0, "-has-errors")

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if 0 <= event.option_index < len(self.findings):
            f = self.findings[event.option_index]
            step = f.detail.get("step")
            self.post_message(self.FindingSelected(f.module, step if isinstance(step, int) else None))
