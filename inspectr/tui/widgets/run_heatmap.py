"""Provides the run's heatmap pane: layers x sampled steps of one statistic, redrawn to its width."""

from __future__ import annotations

from textual.events import Resize
from textual.widgets import Static

from inspectr.core.runs.report import RunReport
from inspectr.report.run_views import heatmap


class RunHeatmap(Static):
    """Set ``report``, ``key``, ``step`` and ``module`` with ``show``; it draws on resize too."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.report: RunReport | None = None
        self.key = "param_grad_norm"
        self.step: int | None = None
        self.module: str | None = None

    def show(self, report: RunReport | None = None, *, key: str | None = None, step: int | None = None,
             module: str | None = None) -> None:
        if report is not None:
            self.report = report
        if key is not None:
            self.key = key
        if step is not None:
            self.step = step
        if module is not None:
            self.module = module
        self._draw()

    def _draw(self) -> None:
        if self.report is None:
            return
        width = self.content_size.width or self.app.size.width // 2
        self.update(heatmap(self.report, self.key, max(20, width), step=self.step, module=self.module))

    def on_resize(self, event: Resize) -> None:
        self._draw()
